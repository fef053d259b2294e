"""Observability: a chord that fails, seen as a whole, drawn, and resumed.

Run it with ``python -m examples.workflows.observability [PICTURE.svg]``. No server is
needed: like the quickstart, it starts ``flowq worker`` on the embedded default (SQLite
under ``./.flowq/``) in a subprocess. It sends a chord of six downloads whose fourth
fails, waits for the workflow to finish, prints it with each node's state, draws it as
an SVG picture (``workflow.svg``, or the path given), then fixes the cause and resumes
the workflow: only the failed download and the body run again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from flowq import Flowq, chord, states
from flowq.exceptions import ChordError

app = Flowq("examples.workflows.observability")
#: While this file exists, download 3 fails (the worker runs in the same directory).
BROKEN = Path(".flowq") / "download-3-is-broken"


@app.task(bind=True)
def download(self, n):
    self.update_state(state="PROGRESS", meta={"step": "connecting"})
    if n == 3 and BROKEN.exists():
        raise ValueError(f"download {n}: connection reset")
    return n * n


@app.task
def merge(sizes):
    return sum(sizes)


@app.task
def alert(task_id):
    print(f"[worker] task {task_id} failed", flush=True)
    return task_id


def start_worker() -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "flowq", "-A", "examples.workflows.observability:app",
               "worker", "-c", "2", "-l", "warning"]
    return subprocess.Popen(command, start_new_session=True)


def wait_until_finished(flow) -> None:
    """A failure fails what waits on it at once; the other downloads and the errback still
    run: wait for every node, so the drawing (and the worker's output) is the same each time."""
    deadline = time.monotonic() + 60
    while not all(state in states.READY_STATES
                  for _, state in flow.graph().nodes(data="state")):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{flow} did not finish")
        time.sleep(0.1)


def main(picture: str = "workflow.svg") -> int:
    BROKEN.parent.mkdir(exist_ok=True)
    BROKEN.touch()
    worker = start_worker()
    try:
        result = chord([download.s(n) for n in range(6)], merge.s()).on_error(alert.s()).delay()
        try:
            result.get(timeout=60, progress=True)
        except ChordError as exc:
            print(f"failed: {exc}")

        flow = result.workflow()
        wait_until_finished(flow)
        print(flow.progress())
        print(flow.render("text"))
        with open(picture, "w") as file:
            file.write(flow.render("svg"))

        BROKEN.unlink()  # the cause is fixed
        print(flow.resume().get(timeout=60, progress=True))
        print(flow.state, flow.progress())
    finally:
        os.kill(worker.pid, signal.SIGTERM)  # warm shutdown: finish, ack, exit
        code = worker.wait(timeout=30)
    print(f"worker stopped (exit code {code})")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
