"""JSON log lines from a real worker: one object per line, with the task's context.

A worker whose app sets ``worker_log_format="json"``, or started with ``--log-format
json`` (which wins over the setting), runs a two-step chain whose task logs from inside (in a pool process) and a task that fails;
every line it writes must be a JSON object, and the lines about a task, the worker's own
and the task's, must name that task, its id and its workflow's root id.
"""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import ROOT, wait_for

pytestmark = pytest.mark.timeout(120)

TASKS = '''
import logging
import os

from flowq import Flowq

app = Flowq("jsontasks", worker_log_format=os.environ["LOG_FORMAT_SETTING"])
log = logging.getLogger("jsontasks")


@app.task
def add(x, y):
    log.info("adding %s and %s", x, y)
    return x + y


@app.task
def boom():
    raise ValueError("no luck")
'''

PRODUCER = '''
import json
from tasks import add, boom

chained = (add.s(1, 2) | add.s(3)).delay()
failed = boom.delay()
print(json.dumps({"value": chained.get(timeout=60), "first": chained.parent.id,
                  "second": chained.id, "boom": failed.id,
                  "error": repr(failed.get(timeout=60, propagate=False))}))
'''

KEYS = {"time", "level", "logger", "process", "process_name", "task_name", "task_id",
        "root_id", "message"}


@pytest.mark.parametrize("setting, flag", [("json", []), ("text", ["--log-format", "json"])],
                         ids=["setting", "flag-over-setting"])
def test_a_worker_writes_json_lines_with_task_context(tmp_path: Path, setting: str,
                                                      flag: list[str]):
    (tmp_path / "tasks.py").write_text(TASKS)
    (tmp_path / "producer.py").write_text(PRODUCER)
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND", "FLOWQ_DATA_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp_path)])
    env["LOG_FORMAT_SETTING"] = setting
    command = [sys.executable, "-m", "flowq", "-A", "tasks:app", "worker", "-c", "1",
               "-l", "info", *flag]
    log_path = tmp_path / "worker.log"
    with open(log_path, "w") as out:
        worker = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: "flowq worker" in log_path.read_text() or worker.poll() is not None,
                 timeout=60, what="the worker's banner")
        produced = subprocess.run([sys.executable, "producer.py"], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=90)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert produced.returncode == 0, produced.stderr + log_path.read_text()
    ids = json.loads(produced.stdout)
    assert ids["value"] == 6 and "ValueError('no luck')" in ids["error"]

    lines = log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert len(records) >= 8
    for record in records:
        assert set(record) - {"exc_info"} == KEYS, record
        datetime.datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    banner = next(r for r in records if r["message"].startswith("flowq worker"))
    assert banner["task_id"] is None and banner["process"] == worker.pid
    assert "\n  app:         tasks:app" in banner["message"]  # one record, one line

    def about(task_id: str) -> list[dict]:
        return [r for r in records if r["task_id"] == task_id]

    first, second = about(ids["first"]), about(ids["second"])
    for step, (task_id, logged) in enumerate([(ids["first"], first), (ids["second"], second)]):
        assert {(r["task_name"], r["root_id"]) for r in logged} == {("tasks.add", ids["first"])}
        worker_lines = [r["message"] for r in logged if r["process"] == worker.pid]
        assert worker_lines[0] == f"Task tasks.add[{task_id}] received"
        assert worker_lines[-1].startswith(f"Task tasks.add[{task_id}] succeeded in ")
        (inside,) = [r for r in logged if r["logger"] == "jsontasks"]
        assert inside["message"] == ["adding 1 and 2", "adding 3 and 3"][step]
        assert inside["process"] != worker.pid and inside["process_name"] != "MainProcess"
    failure = [r for r in about(ids["boom"]) if r["level"] == "ERROR"]
    assert [(r["task_name"], r["root_id"]) for r in failure] == [("tasks.boom", ids["boom"])]
    assert failure[0]["message"].startswith(f"Task tasks.boom[{ids['boom']}] failed in ")
