"""The ``memory://`` broker: a worker and its producer in one process (threads pool)."""

from __future__ import annotations

import threading

import pytest

from flowq import Flowq, chord, group
from flowq.runtime.worker import Worker


@pytest.mark.timeout(60)
def test_a_worker_thread_runs_workflows_over_memory_transport():
    app = Flowq("memory-test", broker="memory://", backend="memory://memory-test")

    @app.task
    def add(x, y):
        return x + y

    @app.task
    def tsum(numbers):
        return sum(numbers)

    worker = Worker(app, pool="threads", concurrency=2, queues=["memory-test"])
    app.conf.task_default_queue = "memory-test"
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        assert (add.s(1, 2) | add.s(3)).delay().get(timeout=20) == 6
        assert group(add.s(i, i) for i in range(5)).delay().get(timeout=20) == [0, 2, 4, 6, 8]
        assert chord([add.s(i, 1) for i in range(10)], tsum.s()).delay().get(timeout=20) == 55
    finally:
        worker.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()
