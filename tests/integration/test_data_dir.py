"""The embedded default cannot split: every process using an app finds the same files.

A project's ``tasks.py`` is written to a temporary directory; a real worker and a real
producer are started from two *other* working directories, and the producer's result
comes back. The data directory is the one beside ``tasks.py`` (or ``FLOWQ_DATA_DIR``),
the worker's banner shows it, and a producer that sends before any worker has consumed
the queue says so in one line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flowq.runtime.worker import READY
from tests.integration.harness import ROOT, wait_for

pytestmark = pytest.mark.timeout(120)

TASKS = '''
from flowq import Flowq

app = Flowq("tasks")


@app.task
def add(x, y):
    return x + y
'''

PRODUCER = '''
import sys
from tasks import add

results = [add.delay(2, 3), add.delay(4, 5)]
if sys.argv[1:] == ["wait"]:
    print([r.get(timeout=60) for r in results])
else:
    print("sent")
'''

WARNING = "No worker has consumed queue 'flowq' of the embedded broker"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """``tasks.py`` in its own directory, plus two unrelated working directories."""
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "tasks.py").write_text(TASKS)
    (tmp_path / "proj" / "producer.py").write_text(PRODUCER)
    for name in ("here", "there"):
        (tmp_path / name).mkdir()
    return tmp_path


def environment(project: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND", "FLOWQ_DATA_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(project / "proj")])
    env.update(extra)
    return env


def produce(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(project / "proj" / "producer.py"), *args],
                          cwd=project / "there", env=env, capture_output=True, text=True,
                          timeout=90)


def run_worker(project: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], Path]:
    log = project / "worker.log"
    with open(log, "w") as out:
        worker = subprocess.Popen([sys.executable, "-m", "flowq", "-A", "tasks:app", "worker",
                                   "-c", "1", "-l", "info"], cwd=project / "here", env=env,
                                  stdout=out, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True)
    wait_for(lambda: READY in log.read_text() or worker.poll() is not None,
             timeout=60, what="the worker to be ready")
    assert worker.poll() is None, log.read_text()
    return worker, log


def stop(worker: subprocess.Popen[str]) -> None:
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    finally:
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_producer_in_another_directory_reaches_the_worker(project: Path):
    env = environment(project)
    # Given no worker has ever consumed: the producer says so, once for two messages
    produced = produce(project, env)
    assert produced.returncode == 0, produced.stderr
    warnings = [line for line in produced.stderr.splitlines() if WARNING in line]
    data = project / "proj" / ".flowq"
    assert warnings == [
        f"{WARNING} {data / 'broker.db'} yet: the message waits there until one does. Start "
        f"a worker for this app (flowq -A module:app worker, from any directory), or give "
        f"producer and worker the same data_dir / FLOWQ_DATA_DIR."]
    # When a worker starts in another directory, and a producer sends from a third
    worker, log = run_worker(project, env)
    try:
        produced = produce(project, env, "wait")
    finally:
        stop(worker)
    # Then both found the files beside tasks.py, and no warning is given any more
    assert produced.returncode == 0, produced.stderr
    assert produced.stdout.splitlines() == ["[5, 9]"]
    assert WARNING not in produced.stderr
    assert f"  data dir:    {data} (embedded default)" in log.read_text().splitlines()
    assert sorted(p.name for p in data.iterdir() if p.suffix == ".db") == [
        "broker.db", "results.db"]
    assert not (project / "here" / ".flowq").exists()
    assert not (project / "there" / ".flowq").exists()


def test_flowq_data_dir_moves_the_files_for_every_process(project: Path):
    shared = project / "shared"
    env = environment(project, FLOWQ_DATA_DIR=str(shared))
    worker, log = run_worker(project, env)
    try:
        produced = produce(project, env, "wait")
    finally:
        stop(worker)
    assert produced.stdout.splitlines() == ["[5, 9]"], produced.stderr
    assert f"  data dir:    {shared} (embedded default)" in log.read_text().splitlines()
    assert (shared / "broker.db").exists() and (shared / "results.db").exists()
    assert not (project / "proj" / ".flowq").exists()
