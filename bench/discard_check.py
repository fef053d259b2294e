"""Cost of the thrown-away-signature check on the calls it guards; one JSON line per call.

    python -m bench discard_check [--calls 200000] [--repeat 5]
    python -m bench.discard_check

``sig.set(queue=...)``, ``sig.link(cb)`` and ``sig.set_immutable(True)`` check their
caller's next instruction (cached per call site; see :mod:`flowq.canvas.discarded`).
Each line gives the best of ``--repeat`` runs, in nanoseconds per call, of the public
method (``checked_ns``), of the same work without the check (``unchecked_ns``: the
private method the public one calls) and of the check alone (``check_ns``), plus
``overhead_pct`` (the check's time as a share of the call's work). Pure canvas code: no broker, backend or worker involved.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from flowq.canvas import discarded, signature

SIG = signature("tasks.add", (1, 2))
CALLBACK = signature("tasks.log")


def _checked(name: str) -> Callable[[], Any]:
    return {"set": lambda: SIG.set(queue="fast"),
            "link": lambda: SIG.link(CALLBACK),
            "set_immutable": lambda: SIG.set_immutable(True)}[name]


def _unchecked(name: str) -> Callable[[], Any]:
    return {"set": lambda: SIG._set(None, {"queue": "fast"}),
            "link": lambda: SIG._add_scope("link", CALLBACK),
            "set_immutable": lambda: SIG._with_immutable(True)}[name]


def _method() -> None:
    discarded.check("set")  # as the first line of a public method would


def _check_alone() -> None:
    return _method()  # a caller that uses the result, as most calls do


def per_call_ns(calls_by_name: dict[str, Callable[[], Any]], calls: int,
                repeat: int) -> dict[str, float]:
    """Best time per call of each function, the functions taking turns in every round
    (so a busy moment of the machine does not fall on one of them only)."""
    best = dict.fromkeys(calls_by_name, float("inf"))
    for _ in range(repeat):
        for name, call in calls_by_name.items():
            started = time.perf_counter()
            for _ in range(calls):
                call()
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: seconds / calls * 1e9 for name, seconds in best.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench discard_check",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="20,000 calls, 2 repeats")
    options = parser.parse_args(argv)
    calls, repeat = (20_000, 2) if options.quick else (options.calls, options.repeat)
    for name in ("set", "link", "set_immutable"):
        ns = per_call_ns({"checked": _checked(name), "unchecked": _unchecked(name),
                          "check": _check_alone}, calls, repeat)
        print(json.dumps({"bench": "discard_check", "call": f"sig.{name}(...)",
                          "calls": calls, "checked_ns": round(ns["checked"]),
                          "unchecked_ns": round(ns["unchecked"]), "check_ns": round(ns["check"]),
                          "overhead_pct": round(100 * ns["check"] / ns["unchecked"], 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
