"""One workload of ``python -m bench compare``, for one system, in a process of its own.

    python -m bench.workloads flowq chain 1000     # prints one JSON object on stdout

The comparison runs each workload in a fresh process so that flowq's and Celery's client
state (connections, caches, imported modules) never mix. Both systems get the same tasks
(``bench.app`` and ``bench.celery_app``) and the same canvas calls; only the imports differ.
Each workload returns the figures it measured (seconds, or a rate) and whether the result
was right; it never asserts a timing.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from bench.harness import percentile


def load(system: str) -> SimpleNamespace:
    """The app, its tasks and the canvas primitives of ``system`` (``flowq``/``celery``)."""
    if system == "flowq":
        from bench import app as module
        from flowq import chain, chord, group
    elif system == "celery":
        from bench import celery_app as module  # type: ignore[no-redef]
        from celery import chain, chord, group  # type: ignore[no-redef]
    else:
        raise SystemExit(f"unknown system {system!r}: use flowq or celery")
    return SimpleNamespace(app=module.app, add=module.add, tsum=module.tsum, noop=module.noop,
                           tick=module.tick, chain=chain, group=group, chord=chord)


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def ready(api: SimpleNamespace, size: int) -> dict[str, Any]:
    """Wait (up to ``size`` seconds) until a worker answers a no-op task."""
    deadline = time.monotonic() + size
    while True:
        try:
            api.noop.delay().get(timeout=2)
            return {"ok": True}
        except Exception as exc:  # noqa: BLE001 - either system's timeout, until the deadline
            if time.monotonic() > deadline:
                return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def producer(api: SimpleNamespace, size: int) -> dict[str, Any]:
    """``size`` calls of ``add.delay(i, i)`` with no worker running; the queue is purged."""
    seconds, _ = timed(lambda: [api.add.delay(i, i) for i in range(size)])
    api.app.control.purge()
    return {"seconds": seconds, "per_s": size / seconds, "ok": True}


def drain(api: SimpleNamespace, size: int) -> dict[str, Any]:
    """``size`` trivial tasks whose results are ignored: first send to last task done."""
    from bench.ledger import ledger_count

    start_count = ledger_count()
    started = time.perf_counter()
    for _ in range(size):
        api.tick.delay()
    sent = time.perf_counter()
    deadline = sent + max(120.0, size / 50)
    while ledger_count() - start_count < size:
        if time.perf_counter() > deadline:
            return {"ok": False, "error": f"{ledger_count() - start_count} of {size} ran"}
        time.sleep(0.005)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "per_s": size / seconds, "send_s": sent - started, "ok": True}


def latency(api: SimpleNamespace, size: int) -> dict[str, Any]:
    """Median and p95 of ``add.delay(1, 1).get()`` over ``size`` calls, after a warm-up."""
    for _ in range(max(5, size // 10)):
        api.add.delay(1, 1).get(timeout=30)
    samples = []
    for _ in range(size):
        seconds, value = timed(lambda: api.add.delay(1, 1).get(timeout=30))
        samples.append(seconds)
    return {"seconds": statistics.median(samples), "p95_s": percentile(samples, 95),
            "ok": value == 2}


def chain(api: SimpleNamespace, size: int) -> dict[str, Any]:
    """A chain of ``size`` steps, ``add.s(0, 0) | add.s(1) | ...``, end to end."""
    steps = [api.add.s(0, 0), *[api.add.s(1) for _ in range(size - 1)]]
    seconds, value = timed(lambda: api.chain(*steps).delay().get(timeout=max(120, size)))
    return {"seconds": seconds, "ok": value == size - 1}


def group(api: SimpleNamespace, size: int) -> dict[str, Any]:
    """``group(add.s(i, i) for i in range(size)).delay().get()``."""
    seconds, value = timed(lambda: api.group(api.add.s(i, i) for i in range(size)).delay().get(
        timeout=max(120, size)))
    return {"seconds": seconds, "ok": list(value) == [2 * i for i in range(size)]}


def chord(api: SimpleNamespace, size: int) -> dict[str, Any]:
    """``chord(add.s(i, i) for i in range(size))(tsum.s()).get()``."""
    seconds, value = timed(lambda: api.chord(api.add.s(i, i) for i in range(size))(
        api.tsum.s()).get(timeout=max(300, size / 5)))
    return {"seconds": seconds, "ok": value == size * (size - 1)}


WORKLOADS: dict[str, Callable[[SimpleNamespace, int], dict[str, Any]]] = {
    "ready": ready, "producer": producer, "drain": drain, "latency": latency,
    "chain": chain, "group": group, "chord": chord}


def main(argv: list[str]) -> int:
    system, workload, size = argv[0], argv[1], int(argv[2])
    api = load(system)
    try:
        figures = WORKLOADS[workload](api, size)
    except Exception as exc:  # noqa: BLE001 - reported as a failed run, not a crash
        figures = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
