"""Round trip of add.delay(1, 1).get(): median and p95 over 500 calls, after a warm-up.

One call at a time from this process to an idle worker (Redis broker + Redis backend,
prefork, 2 children). Also reports pickup latency: from just before ``delay()`` to the
moment the task body starts in the child (both clocks are this machine's).
"""

from __future__ import annotations

import sys
import time

from bench.harness import Stack, emit, latency_summary, parser, progress

NAME = "latency"


def measure(stack: Stack, calls: int, warmup: int) -> dict[str, float]:
    """Round trips of ``add.delay(1, 1).get()`` and pickups of ``stamp.delay()``."""
    from bench.app import add, stamp

    for _ in range(warmup):
        add.delay(1, 1).get(timeout=30)
    round_trips = []
    for _ in range(calls):
        started = time.perf_counter()
        value = add.delay(1, 1).get(timeout=30)
        round_trips.append(time.perf_counter() - started)
        assert value == 2, value
    pickups = []
    for _ in range(min(calls, 200)):
        sent = time.time()
        began = stamp.delay().get(timeout=30)
        pickups.append(began - sent)
    return {**latency_summary(round_trips), **latency_summary(pickups, "pickup_")}


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--calls", type=int, help="measured calls (default 500; --quick 50)")
    parse.add_argument("--warmup", type=int, help="unmeasured calls first (default 50)")
    options = parse.parse_args(argv)
    calls = options.calls or (50 if options.quick else 500)
    warmup = options.warmup if options.warmup is not None else (10 if options.quick else 50)
    with Stack(NAME, options) as stack:
        progress(f"starting a worker (-c {options.concurrency}) on {stack.queue}")
        stack.start_worker()
        progress(f"{warmup} warm-up calls, then {calls} measured round trips")
        figures = measure(stack, calls, warmup)
        emit(NAME, "add.delay(1, 1).get()", **stack.description, calls=calls, warmup=warmup,
             **figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
