"""Quickstart: a worker on the embedded default, a chain and a chord, their graph.

Run it with ``python -m examples.workflows.quickstart``. No server is needed: with no
broker or backend configured, flowq keeps both in SQLite files in ``.flowq/`` beside
this file (``FLOWQ_DATA_DIR`` moves them).
The script starts ``flowq worker`` in a subprocess, sends two workflows, prints their
results and the chord's graph, and stops the worker with a warm shutdown.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from flowq import Flowq, chord

app = Flowq("examples.workflows.quickstart")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def log_result(value: int) -> str:
    message = f"the result is {value}"
    print(f"[worker] {message}", flush=True)
    return message


@app.task
def tsum(numbers: list[int]) -> int:
    return sum(numbers)


def workflow_chord():
    """Ten additions in parallel, then their sum."""
    return chord([add.s(i, i) for i in range(10)], tsum.s())


def start_worker() -> subprocess.Popen[bytes]:
    """``flowq -A examples.workflows.quickstart:app worker`` in its own process group."""
    command = [sys.executable, "-m", "flowq", "-A", "examples.workflows.quickstart:app",
               "worker", "-c", "2", "-l", "warning"]
    return subprocess.Popen(command, start_new_session=True)


def main() -> int:
    worker = start_worker()
    try:
        started = time.perf_counter()
        result = (add.s(2, 2) | log_result.s()).delay()
        print("chain:", result.get(timeout=60))
        chord_result = workflow_chord().delay()
        print("chord:", chord_result.get(timeout=60))
        print(f"both finished in {time.perf_counter() - started:.2f}s")
        print()
        print(workflow_chord().render("text"))
    finally:
        os.kill(worker.pid, signal.SIGTERM)  # warm shutdown: finish, ack, exit
        code = worker.wait(timeout=30)
    print(f"worker stopped (exit code {code})")
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
