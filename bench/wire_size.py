"""Size and speed of the workflow wire format; one JSON line per canvas shape.

    python -m bench wire_size [--repeat 3] [--quick]
    python -m bench.wire_size

For each shape: ``nodes`` in the compiled workflow, ``bytes`` of its compact JSON
encoding (:func:`flowq.canvas.wire.dumps`, UTF-8), ``bytes_per_node``, and the best of
``--repeat`` runs of ``encode_ms`` (workflow to JSON text) and ``decode_ms`` (JSON text
to a validated workflow). Pure canvas code: no broker, backend or worker involved.
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

ADD, TSUM = "tasks.add", "tasks.tsum"


def add(*args: Any) -> Any:
    return signature(ADD, args)


def long_chain(n: int) -> Any:
    return chain(add(0, 0), *(add(i) for i in range(1, n)))


def wide_chord(n: int) -> Any:
    return chord([add(i, i) for i in range(n)], signature(TSUM))


def group_of_chains(chains: int, steps: int) -> Any:
    return group(chain(add(c, 0), *(add(i) for i in range(1, steps))) for c in range(chains))


def cases(quick: bool) -> list[tuple[str, Callable[[], Any]]]:
    scale = 10 if quick else 1
    return [
        (f"chain_{1_000 // scale}", lambda: long_chain(1_000 // scale)),
        (f"chain_{10_000 // scale}", lambda: long_chain(10_000 // scale)),
        (f"chain_{100_000 // scale}", lambda: long_chain(100_000 // scale)),
        (f"chord_{1_000 // scale}", lambda: wide_chord(1_000 // scale)),
        (f"chord_{10_000 // scale}", lambda: wide_chord(10_000 // scale)),
        (f"group_of_{100 // scale}_chains_of_100", lambda: group_of_chains(100 // scale, 100)),
    ]


def best_ms(action: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return round(min(times) * 1000, 2)


def measure(name: str, build: Callable[[], Any], repeat: int) -> dict[str, Any]:
    workflow = compile_workflow(build(), seed="00000000-0000-4000-8000-000000000000")
    text = wire.dumps(workflow)
    assert wire.loads(text) == workflow
    size = len(text.encode())
    return {"bench": "wire_size", "case": name, "nodes": len(workflow), "bytes": size,
            "bytes_per_node": round(size / len(workflow), 1),
            "encode_ms": best_ms(lambda: wire.dumps(workflow), repeat),
            "decode_ms": best_ms(lambda: wire.loads(text), repeat),
            "cpus": os.cpu_count(), "python": sys.version.split()[0]}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench wire_size", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per case (best)")
    parser.add_argument("--quick", action="store_true", help="cases a tenth of the size")
    options = parser.parse_args(argv)
    for name, build in cases(options.quick):
        print(json.dumps(measure(name, build, max(1, options.repeat))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
