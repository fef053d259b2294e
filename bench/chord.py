"""Wall time of chord(add.s(i, i) for i in range(N))(tsum.s()).get() for N = 1,000 and 10,000.

``--quick`` runs N = 100 and 1,000. The clock runs from building the chord to ``get()``
returning, with a warmed-up idle worker (2 prefork children); ``send_s`` is the part
spent in the producer publishing the N header messages, while the worker already runs them.
"""

from __future__ import annotations

import sys
import time

from bench.harness import Stack, emit, parser, progress

NAME = "chord"


def run_chord(size: int, timeout: float) -> tuple[float, float, int]:
    """(total seconds, seconds spent sending, result) for a chord of ``size`` parts."""
    from bench.app import add, tsum
    from flowq import chord

    started = time.perf_counter()
    handle = chord(add.s(i, i) for i in range(size))(tsum.s())
    sent = time.perf_counter()
    value = handle.get(timeout=timeout)
    return time.perf_counter() - started, sent - started, value


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--sizes", type=int, nargs="*", help="header sizes N (overrides defaults)")
    options = parse.parse_args(argv)
    sizes = options.sizes or ([100, 1_000] if options.quick else [1_000, 10_000])
    with Stack(NAME, options) as stack:
        progress(f"starting a worker (-c {options.concurrency}) on {stack.queue}")
        stack.start_worker()
        run_chord(10, 30)  # warm-up
        for size in sizes:
            progress(f"chord of {size} header tasks")
            seconds, sending, value = run_chord(size, timeout=max(600.0, size * 0.1))
            emit(NAME, f"chord of {size}", **stack.description, header_tasks=size,
                 seconds=round(seconds, 3), send_s=round(sending, 3),
                 tasks_per_s=round((size + 1) / seconds, 1), result=value,
                 correct=value == size * (size - 1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
