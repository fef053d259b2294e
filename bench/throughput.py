"""Tasks/s draining 10,000 trivial tasks with 2 prefork children; also the publish rate.

The tasks (``add.delay(i, i)``, one message per call) are published with no worker
running, then a worker starts and the clock runs until every result exists. Reported:

* ``publish_per_s``: ``delay()`` calls per second from this one process;
* ``tasks_per_s``: steady drain rate, from the first result seen to the last;
* ``tasks_per_s_incl_startup``: from starting the worker process to the last result;
* ``worker_first_result_s``: worker start-up until the first result exists;
* ``cpu_ms_per_task_*``: CPU time per task, from the first result to the last, of the
  worker's main process, its pool children, the Redis server and this (polling) process.

Results are found by polling the backend every 50 ms, oldest first (a few MGETs per
poll), so the end time is late by at most one poll interval.
"""

from __future__ import annotations

import sys
import time

from bench.harness import CpuMeter, Stack, emit, parser, progress

NAME = "throughput"


def publish(count: int) -> tuple[list[str], float]:
    """Send ``count`` tasks; return their ids and the seconds it took."""
    from bench.app import add

    started = time.perf_counter()
    ids = [add.delay(i, i).id for i in range(count)]
    return ids, time.perf_counter() - started


def drain(stack: Stack, ids: list[str]) -> dict[str, float]:
    """Start a worker and time it through every task in the queue."""
    worker = stack.start_worker(ready=False)
    meter = CpuMeter(worker, stack.redis if stack.kind == "redis" else None)
    first, last, polls = stack.wait_results(ids, timeout=max(120.0, len(ids) / 20),
                                            on_first=meter.start)
    assert first is not None
    count = len(ids)
    return {**meter.per_task_ms(count),
            "tasks_per_s": round((count - 1) / max(last - first, 1e-9), 1),
            "tasks_per_s_incl_startup": round(count / (last - worker.started), 1),
            "drain_s": round(last - first, 3),
            "worker_first_result_s": round(first - worker.started, 3),
            "polls": polls}


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--tasks", type=int, help="tasks to drain (default 10,000; --quick 1,000)")
    options = parse.parse_args(argv)
    count = options.tasks or (1_000 if options.quick else 10_000)
    with Stack(NAME, options) as stack:
        progress(f"publishing {count} tasks to {stack.queue} (no worker yet)")
        ids, seconds = publish(count)
        progress(f"published in {seconds:.2f}s; starting a worker (-c {options.concurrency})")
        figures = drain(stack, ids)
        failed = stack.failures(ids)
        progress(f"drained at {figures['tasks_per_s']} tasks/s")
        emit(NAME, f"drain {count} add tasks", **stack.description, tasks=count,
             publish_per_s=round(count / seconds, 1), publish_s=round(seconds, 3),
             **figures, failed=failed)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
