"""Producer memory sending a huge chord: a header from a generator vs the same as a list.

    python -m bench.stream_chord [--parts 100000] [--quick] [--trace] [--redis-db N]
    python -m bench.stream_chord --parts 1000000

Sends ``chord(add.s(i, i) for i in range(N))(tsum.s())`` to Redis (broker and backend
in ``--redis-db``, private keys and queue, deleted after; no worker: only the sending is
measured), once with the header as a generator, which flowq takes from in batches while
sending, and once as a list built first. For each it reports how much the process's peak
resident memory grew while building and sending, the time, how many messages reached the
queue and, with ``--trace``, the peak of Python allocations (``tracemalloc``). A streamed header keeps one
batch of members (500) in the producer at a time; a list keeps all N signatures, and
the N-node workflow they compile to.
"""

from __future__ import annotations

import gc
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from bench.harness import Stack, emit, parser, progress

NAME = "stream_chord"


def peak_rss_mib() -> float:
    """The process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(send: Callable[[], Any], trace: bool) -> dict[str, float]:
    """Peak resident memory growth and time of ``send()``; with ``trace``, also the peak
    of Python allocations (tracemalloc, which makes the send several times slower)."""
    gc.collect()
    rss_before = peak_rss_mib()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    send()
    figures = {"send_seconds": round(time.perf_counter() - started, 2),
               "peak_rss_growth_mib": round(peak_rss_mib() - rss_before, 1)}
    if trace:
        figures["python_peak_mib"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return figures


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--parts", type=int,
                       help="header tasks (default 100,000; --quick 5,000)")
    parse.add_argument("--trace", action="store_true",
                       help="also measure the peak of Python allocations (tracemalloc; slow)")
    options = parse.parse_args(argv)
    parts = options.parts or (5_000 if options.quick else 100_000)
    from flowq import chord

    from bench.app import add, tsum

    # the generator first: the peak RSS it leaves is then not the list's
    shapes = {"generator": lambda: (add.s(i, i) for i in range(parts)),
              "list": lambda: [add.s(i, i) for i in range(parts)]}
    for shape, header in shapes.items():
        with Stack(NAME, options) as stack:
            progress(f"sending a chord of {parts:,} with its header as a {shape}")
            figures = measure(lambda: chord(header())(tsum.s()), options.trace)
            queued = sum(stack.redis.llen(key) for key in stack.queue_keys())
            emit(NAME, f"chord of {parts:,} add.s(i, i), header as a {shape}",
                 **stack.description, parts=parts, header=shape, messages_queued=queued,
                 **figures)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
