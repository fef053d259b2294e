"""A reusable package's ``@shared_task``, found by ``autodiscover_tasks``, runs on a real
worker: the package never imports the project's app."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, wait_for

pytestmark = pytest.mark.timeout(120)

FILES = {
    "proj_app.py": '''
from flowq import Flowq

app = Flowq("proj")
app.autodiscover_tasks(["billing", "docs"])  # docs has no tasks module: skipped
''',
    "billing/__init__.py": "",
    "billing/tasks.py": '''
from flowq import shared_task


@shared_task(name="billing.charge", max_retries=1)
def charge(amount):
    return amount * 2
''',
    "docs/__init__.py": "",
    "producer.py": '''
import proj_app  # the project's app exists first, as in a web process
from billing.tasks import charge

print(charge.delay(21).get(timeout=60))
''',
}


def test_a_worker_runs_an_autodiscovered_shared_task(tmp_path: Path):
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND", "FLOWQ_DATA_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "flowq", "-A", "proj_app", "worker",
                                   "-c", "1"], cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "  tasks:" in log.read_text() or worker.poll() is not None,
                 timeout=60, what="the worker's banner")
        produced = subprocess.run([sys.executable, "producer.py"], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=90)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert "  tasks:       billing.charge" in log.read_text().splitlines(), log.read_text()
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.splitlines() == ["42"]
