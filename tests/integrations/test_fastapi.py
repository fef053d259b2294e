"""The FastAPI example of docs/integrations.md, for real: FastAPI's TestClient calls an
endpoint that sends a chord and one that reads its state, while a real worker
(``flowq -A reports.tasks:app worker``) runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowq import _state
from tests.integration.harness import ROOT, wait_for

PROJECT = Path(__file__).resolve().parent / "fastapi_project"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[subprocess.Popen[bytes]]:
    """A worker for the example's app, sharing this test's embedded data directory."""
    for name in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FLOWQ_DATA_DIR", str(tmp_path / "q"))
    monkeypatch.syspath_prepend(str(PROJECT))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(PROJECT)])}
    log = tmp_path / "worker.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "flowq", "-A", "reports.tasks:app",
                                    "worker", "-c", "2"], cwd=tmp_path, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    previous = _state.current_app()
    try:
        wait_for(lambda: "  tasks:" in log.read_text() or process.poll() is not None,
                 timeout=60, what="the worker's banner")
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        for name in [m for m in sys.modules if m == "reports" or m.startswith("reports.")]:
            del sys.modules[name]
        _state.set_current_app(previous)


def test_an_endpoint_sends_a_chord_and_another_reads_its_state(worker):
    from fastapi.testclient import TestClient

    from reports.api import api

    client = TestClient(api)
    started = client.post("/reports", json={"texts": ["one two", "three", "four five six"]})
    assert started.status_code == 202
    report_id = started.json()["id"]

    deadline = time.monotonic() + 60
    state = client.get(f"/reports/{report_id}").json()
    while state["state"] != "SUCCESS":
        assert state["state"] == "PENDING", state
        assert time.monotonic() < deadline, f"the chord did not finish: {state}"
        time.sleep(0.1)
        state = client.get(f"/reports/{report_id}").json()
    assert state == {"id": report_id, "state": "SUCCESS", "words": 6}
    assert client.get("/reports/no-such-report").json() == {
        "id": "no-such-report", "state": "PENDING"}
