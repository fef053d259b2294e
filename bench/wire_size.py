"""Size and speed of the workflow wire format; one JSON line per canvas shape.

    python -m bench wire_size [--repeat 3] [--quick]
    python -m bench.wire_size

For each shape: ``nodes`` in the compiled workflow, ``bytes`` of its compact JSON
encoding (:func:`flowq.canvas.wire.dumps`, UTF-8), ``bytes_per_node``, and the best of
``--repeat`` runs of ``build_ms`` (building the canvas from its signatures, which are
made beforehand), ``encode_ms`` (workflow to JSON text) and ``decode_ms`` (JSON text to
a validated workflow). ``chain_N_by_pipe`` is ``chain_N`` written ``a | b | ...`` in a
loop (same bytes; its ``build_ms`` shows ``|`` is linear). The ``shared_*`` cases repeat
one 200-item argument list (a member, an errback), which the encoding writes once.
Pure canvas code: no broker, backend or worker involved.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from flowq.canvas import chain, chord, compile_workflow, group, signature, wire


ADD, TSUM, IDENT, ERRBACK = "tasks.add", "tasks.tsum", "tasks.ident", "tasks.errback"
SHARED = list(range(200))

#: A case: its name and a function returning a function that builds the canvas (the
#: outer one makes the signatures, so build_ms times composition only).
Case = tuple[str, Callable[[], Callable[[], Any]]]


def add(*args: Any) -> Any:
    return signature(ADD, args)


def long_chain(n: int) -> Callable[[], Any]:
    steps = [add(0, 0), *(add(i) for i in range(1, n))]
    return lambda: chain(*steps)


def piped_chain(n: int) -> Callable[[], Any]:
    steps = [add(0, 0), *(add(i) for i in range(1, n))]

    def build() -> Any:
        canvas = steps[0]
        for step in steps[1:]:
            canvas = canvas | step
        return canvas

    return build


def wide_chord(n: int) -> Callable[[], Any]:
    header, body = [add(i, i) for i in range(n)], signature(TSUM)
    return lambda: chord(header, body)


def group_of_chains(chains: int, steps: int) -> Callable[[], Any]:
    lines = [[add(c, 0), *(add(i) for i in range(1, steps))] for c in range(chains)]
    return lambda: group(chain(*line) for line in lines)


def shared_member(n: int) -> Callable[[], Any]:
    member = signature(IDENT, (SHARED,))
    return lambda: group([member] * n)


def shared_errback(n: int) -> Callable[[], Any]:
    members, errback = [signature(IDENT, (i,)) for i in range(n)], signature(ERRBACK, (SHARED,))
    return lambda: group(member.link_error(errback) for member in members)


def cases(quick: bool) -> list[Case]:
    scale = 10 if quick else 1
    return [
        (f"chain_{1_000 // scale}", lambda: long_chain(1_000 // scale)),
        (f"chain_{10_000 // scale}", lambda: long_chain(10_000 // scale)),
        (f"chain_{100_000 // scale}", lambda: long_chain(100_000 // scale)),
        (f"chain_{100_000 // scale}_by_pipe", lambda: piped_chain(100_000 // scale)),
        (f"chord_{1_000 // scale}", lambda: wide_chord(1_000 // scale)),
        (f"chord_{10_000 // scale}", lambda: wide_chord(10_000 // scale)),
        (f"group_of_{100 // scale}_chains_of_100", lambda: group_of_chains(100 // scale, 100)),
        ("shared_member_x1", lambda: shared_member(1)),
        ("shared_member_x100", lambda: shared_member(100)),
        ("shared_errback_x1", lambda: shared_errback(1)),
        ("shared_errback_x50", lambda: shared_errback(50)),
    ]


def best_ms(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return round(min(times) * 1000, 2)


def measure(name: str, prepare: Callable[[], Callable[[], Any]], repeat: int) -> dict[str, Any]:
    build = prepare()
    workflow = compile_workflow(build(), seed="00000000-0000-4000-8000-000000000000")
    text = wire.dumps(workflow)
    assert wire.loads(text) == workflow
    size = len(text.encode())
    return {"bench": "wire_size", "case": name, "nodes": len(workflow), "bytes": size,
            "bytes_per_node": round(size / len(workflow), 1),
            "build_ms": best_ms(build, repeat),
            "encode_ms": best_ms(lambda: wire.dumps(workflow), repeat),
            "decode_ms": best_ms(lambda: wire.loads(text), repeat),
            "cpus": os.cpu_count(), "python": sys.version.split()[0]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench wire_size", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per case (best)")
    parser.add_argument("--quick", action="store_true", help="cases a tenth of the size")
    options = parser.parse_args(argv)
    for name, prepare in cases(options.quick):
        print(json.dumps(measure(name, prepare, max(1, options.repeat))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
