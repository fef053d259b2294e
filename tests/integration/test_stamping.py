"""Stamping on a real worker: stamps reach every task of a workflow (steps published later
by workers, chord bodies, errbacks, replacements), and ``revoke_by_stamped_headers``
stops running, queued and future tasks with those stamps.

The module's worker has one process and a prefetch of one, so "a task waiting behind a
busy worker" is a fact of the setup, not a race.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowq import chain, chord, group, states
from flowq.canvas.stamping import StampingVisitor
from flowq.exceptions import TaskRevokedError
from flowq.runtime import revoked_stamps
from tests.integration.app import app, fail
from tests.integration.semantics_support import (
    NamedCluster,
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    require,
    settle,
    wait_state,
)
from tests.integration.signal_receivers import stamp_probe, stamp_replacer

pytestmark = pytest.mark.timeout(120)
CONFIG = "redis-db10"  # this module's Redis database (broker, backend and ledger)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedCluster]:
    require("redis")
    instance = NamedCluster(CONFIG, tmp_path_factory.mktemp("stamping"))
    instance.configure(app)
    try:
        instance.start_named(concurrency=1, env={"FLOWQ_TEST_PREFETCH": "1"})
        yield instance
    finally:
        instance.cleanup()


class Numbered(StampingVisitor):
    """Gives each signature its own number, as a monitoring visitor gives ids."""

    def __init__(self) -> None:
        self.count = 0

    def on_signature(self, sig: Any, **headers: Any) -> dict[str, Any]:
        self.count += 1
        return {"n": self.count}


def probes(cluster: NamedCluster, name: str, expected: int) -> list[tuple[str, dict, list]]:
    """``(task id, stamps, stamped_headers)`` of each probe run."""
    entries = settle(cluster, name, expected)
    assert len(entries) == expected, entries
    return [(task_id, json.loads(stamps), json.loads(names))
            for task_id, stamps, names in (entry.split("|") for entry in entries)]


def test_stamps_reach_every_task_of_a_workflow(cluster):
    seen, run = kind(), f"run-{uuid.uuid4().hex[:8]}"
    workflow = chain(
        stamp_probe.s(1, kind=seen),
        group(stamp_probe.s(kind=seen), stamp_replacer.s(kind=seen)),
        chord([stamp_probe.si(2, kind=seen), stamp_probe.si(3, kind=seen)],
              stamp_probe.s(kind=seen)))
    visitor = Numbered()
    workflow = workflow.stamp(visitor=visitor, run=run)
    assert visitor.count == 6  # one number per signature
    assert workflow.delay().get(timeout=T) == [2, 3]

    # every signature ran once; the replacement's two steps kept the replaced task's stamps
    runs = probes(cluster, seen, 7)
    assert all(stamps["run"] == run and names == ["n", "run"] for _, stamps, names in runs)
    numbers = sorted(stamps["n"] for _, stamps, _ in runs)
    replacer_number = next(n for n in numbers if numbers.count(n) == 2)
    assert numbers == sorted([*range(1, 7), replacer_number])

    errback = kind()
    failing = fail.s(1).on_error(stamp_probe.s(kind=errback)).stamp(run=run)
    with pytest.raises(ValueError):
        failing.delay().get(timeout=T)
    [(_, stamps, _)] = probes(cluster, errback, 1)
    assert stamps == {"run": run}


def test_revoke_by_stamped_headers_stops_running_and_queued_tasks(cluster):
    running_kind, queued_kind, other_kind = kind(), kind(), kind()
    run, other = f"run-{uuid.uuid4().hex[:8]}", f"run-{uuid.uuid4().hex[:8]}"
    running = stamp_probe.s("a", kind=running_kind, seconds=30).stamp(run=run).delay()
    settle(cluster, running_kind, 1, wait=0)  # it runs; the next ones wait behind it
    queued = stamp_probe.s("b", kind=queued_kind).stamp(run=run).delay()
    survivor = stamp_probe.s("c", kind=other_kind).stamp(run=other).delay()

    running.revoke_by_stamped_headers({"run": run}, terminate=True)  # any handle does
    for result in (running, queued):
        wait_state(result, states.REVOKED)
        with pytest.raises(TaskRevokedError):
            result.get(timeout=T)
    assert survivor.get(timeout=T) == "c"  # another stamp value: untouched
    assert cluster.ledger_list(queued_kind) == []


def test_steps_published_after_the_revoke_are_revoked_too(cluster):
    first_kind, later_kind, gate = kind(), kind(), kind()
    run = f"run-{uuid.uuid4().hex[:8]}"
    result = (stamp_probe.s("x", kind=first_kind, gate=gate)
              | stamp_probe.s(kind=later_kind)).stamp(run=run).delay()
    settle(cluster, first_kind, 1, wait=0)  # the first step runs; the second is not sent yet

    replies = app.control.revoke_by_stamped_headers(  # without terminate; wait for the reply
        {"run": [run, "another value"]}, destination=[cluster.hostname], reply=True,
        timeout=T)
    assert [cluster.hostname] == [name for reply in replies for name in reply]
    cluster.open_gate(gate)
    assert result.parent.get(timeout=T) == "x"  # the running step finishes
    wait_state(result, states.REVOKED)  # the step it then published never runs
    assert cluster.ledger_list(later_kind) == []


def test_a_worker_that_missed_the_broadcast_refuses_stamped_tasks_from_the_backend(cluster):
    """Revocations by stamp are kept in the result backend (as a worker started later, or
    one that was reconnecting, would read them): written there with no broadcast, a
    stamped task that falls due later is refused."""
    runs, run = kind(), f"run-{uuid.uuid4().hex[:8]}"
    app.backend.revoke(revoked_stamps.entries({"run": run}), expires=600)
    # the worker reloads revocations before it moves due delayed messages to their queue
    late = stamp_probe.s("late", kind=runs).stamp(run=run).apply_async(countdown=1)
    wait_state(late, states.REVOKED)
    assert cluster.ledger_list(runs) == []
