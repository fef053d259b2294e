"""Latency and throughput on the embedded default (SQLite broker and backend, no server).

* pickup latency: from just before ``stamp.delay()`` to the task body starting in a pool
  child, one call at a time with 50 ms idle gaps (the goal is under 50 ms: reported as
  ``pickup_goal_met``, never asserted);
* round trip: ``add.delay(1, 1).get()``, one at a time (``get`` polls the SQLite backend
  with a 1-25 ms backoff);
* throughput: tasks published with no worker running, then a worker (2 prefork children)
  drains them; the clock runs from the first result to the last, as in ``throughput``.

Default sizes: 200 probes of each latency, 10,000 tasks drained; ``--quick``: 30 and 500.
"""

from __future__ import annotations

import sys
import time

from bench.harness import Stack, emit, latency_summary, parser, progress
from bench.throughput import drain, publish

NAME = "embedded"
PICKUP_GOAL_MS = 50.0


def latencies(calls: int) -> dict[str, float]:
    from bench.app import add, stamp

    for _ in range(10):
        add.delay(1, 1).get(timeout=30)
    pickups = []
    for _ in range(calls):
        time.sleep(0.05)  # let the worker go idle: this is the latency of a quiet queue
        sent = time.time()
        began = stamp.delay().get(timeout=30)
        pickups.append(began - sent)
    round_trips = []
    for _ in range(calls):
        started = time.perf_counter()
        add.delay(1, 1).get(timeout=30)
        round_trips.append(time.perf_counter() - started)
    figures = {**latency_summary(pickups, "pickup_"), **latency_summary(round_trips)}
    figures["pickup_goal_ms"] = PICKUP_GOAL_MS
    figures["pickup_goal_met"] = figures["pickup_p95_ms"] < PICKUP_GOAL_MS
    return figures


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--calls", type=int, help="latency probes (default 200; --quick 30)")
    parse.add_argument("--tasks", type=int, help="tasks drained (default 10,000; --quick 500)")
    options = parse.parse_args(argv)
    calls = options.calls or (30 if options.quick else 200)
    count = options.tasks or (500 if options.quick else 10_000)
    with Stack(NAME, options, kind="embedded") as stack:
        progress(f"starting a worker (-c {options.concurrency}) on SQLite in {stack.data_dir}")
        stack.start_worker()
        progress(f"{calls} pickup probes, then {calls} round trips")
        emit(NAME, "latency", **stack.description, calls=calls, **latencies(calls))
        stack.stop_workers()
        progress(f"publishing {count} tasks (no worker running)")
        ids, seconds = publish(count)
        progress(f"published in {seconds:.2f}s; starting a worker")
        figures = drain(stack, ids)
        emit(NAME, f"drain {count} add tasks", **stack.description, tasks=count,
             publish_per_s=round(count / seconds, 1), publish_s=round(seconds, 3), **figures,
             failed=stack.failures(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
