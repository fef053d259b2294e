"""Wall time of chain(add.s(0, 0), *[add.s(1)] * N).delay().get() for N = 1,000.

``--full`` adds N = 5,000; ``--quick`` runs N = 100. The clock runs from building the
chain to ``get()`` returning N, with a warmed-up idle worker (2 prefork children).
Steps run one after another, so this is the per-step cost of advancing a chain: run,
record, publish the next step, which the worker then picks up.
"""

from __future__ import annotations

import sys
import time

from bench.harness import Stack, emit, parser, progress

NAME = "chain"


def run_chain(steps: int, timeout: float) -> tuple[float, float, int]:
    """(total seconds, seconds spent in delay(), result) for a chain of ``steps`` + 1."""
    from bench.app import add
    from flowq import chain

    started = time.perf_counter()
    handle = chain(add.s(0, 0), *[add.s(1)] * steps).delay()
    sent = time.perf_counter()
    value = handle.get(timeout=timeout)
    return time.perf_counter() - started, sent - started, value


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--steps", type=int, nargs="*", help="chain lengths N (overrides sizes)")
    options = parse.parse_args(argv)
    sizes = options.steps or ([100] if options.quick else [1_000] + ([5_000] if options.full
                                                                       else []))
    with Stack(NAME, options) as stack:
        progress(f"starting a worker (-c {options.concurrency}) on {stack.queue}")
        stack.start_worker()
        run_chain(10, 30)  # warm-up: both children have imported and connected
        for steps in sizes:
            progress(f"chain of {steps} + 1 steps")
            seconds, sending, value = run_chain(steps, timeout=max(600.0, steps * 0.5))
            emit(NAME, f"chain of {steps}", **stack.description, steps=steps + 1,
                 seconds=round(seconds, 3), send_s=round(sending, 4),
                 steps_per_s=round((steps + 1) / seconds, 1),
                 ms_per_step=round(seconds / (steps + 1) * 1000, 3), result=value,
                 correct=value == steps)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
