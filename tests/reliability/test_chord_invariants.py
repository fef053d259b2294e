"""D. Canvas invariants under faults (reliability-scenarios.md, family D).

D2 drives the chord bookkeeping directly (every backend); D3, D4 run on real workers;
D1 generates random canvases and fault schedules with Hypothesis and runs them on a
real worker over Redis: a few fixed examples in the fast tier, many more under
``-m stress``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from flowq import chain, chord, group, states
from flowq.canvas.dag import JOIN, TASK
from flowq.exceptions import ChordError
from flowq.runtime.advance import At, advanced_flag
from flowq.runtime.backends.base import ChordPart
from flowq.runtime.codec import ResultCodec
from flowq.runtime.eager import run_eagerly
from flowq.runtime.workflows import WorkflowStore
from tests.integration.app import app, fail
from tests.reliability.checker import Ledger, assert_total_queue
from tests.reliability.conftest import (
    FaultCluster,
    recording_advancer,
    require_servers,
    send_workflow,
)
from tests.reliability.fault_tasks import body, on_error, step
from tests.reliability.faults import TaskFault, wait_for

pytestmark = pytest.mark.timeout(120)
T = 30
Fault = TaskFault.Method


def kind() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


# -- D2: duplicate completions straight into the bookkeeping ---------------------------------------


class Recorder:
    """An advancer over one backend whose 'broker' is a list."""

    def __init__(self, backend: Any, canvas: Any):
        self.workflow = app.compile(canvas)
        self.sent: list[Any] = []
        self.advancer = recording_advancer(backend, self.sent)
        self.carried = WorkflowStore(backend, 4096, 1000, None).carry(self.workflow)
        self.advancer.start(self.carried, self.workflow.seed, None)

    def at(self, position: int) -> At:
        return At(self.carried, position, self.workflow.seed)

    def published(self, task: Any) -> list[str]:
        return [m.id for m in self.sent if m.headers["task"] == task.name]


def test_same_part_stored_twice_counts_once(any_backend):
    """D2: storing one member's completion twice never counts it twice; only the call
    that recorded the last part sees the chord complete (and a retry by that same
    member, so a crash between 'complete' and 'body sent' cannot lose the body)."""
    codec = ResultCodec()
    any_backend.chord_init([("j", 3)])

    def part(index: int, claimant: str) -> Any:
        return any_backend.store(claimant, states.SUCCESS, codec.success(index),
                                 part=ChordPart("j", index, 3, codec.dump_value(index), claimant))

    first = part(0, "m0")
    again = part(0, "m0")
    assert first.new and not again.new
    assert first.joined is None and again.joined is None
    assert part(1, "m1").joined is None
    assert part(1, "m1").joined is None  # duplicate of a non-final part
    completing = part(2, "m2")
    assert completing.joined is not None
    assert [codec.load_value(v) for v in completing.joined] == [0, 1, 2]
    assert part(2, "m2").joined is not None  # the same claimant's retry sees it again
    assert part(2, "m2-impostor").joined is None  # the same index from another id never
    assert part(0, "m0").joined is None  # nor an earlier member's late duplicate
    assert sorted(any_backend.chord_values("j")) == [0, 1, 2]


@pytest.mark.parametrize("late_ack", [False, True], ids=["early_ack", "acks_late"])
def test_duplicate_member_completions_publish_the_body_once(any_backend, late_ack):
    """D2 at the advancer: every member completes twice, in an interleaved order; the body
    is published once."""
    run = Recorder(any_backend, chord([step.s(i) for i in range(3)], body.s()))
    for position in (0, 1, 1, 2, 0, 2, 2):
        run.advancer.succeeded(run.at(position), position, late_ack=late_ack)
    out = run.workflow.output
    assert run.published(body) == [run.workflow.node_id(out)]


def test_republish_after_a_lost_advanced_flag_reuses_the_body_id(any_backend):
    """D2/A5: if the completing member died after sending the body but before marking
    itself advanced, its redelivery sends the body again with the same id (so a consumer
    can recognise it); without that crash it sends nothing."""
    run = Recorder(any_backend, chord([step.s(i) for i in range(2)], body.s()))
    run.advancer.succeeded(run.at(0), 0, late_ack=True)
    run.advancer.succeeded(run.at(1), 1, late_ack=True)
    run.advancer.succeeded(run.at(1), 1, late_ack=True)  # redelivery after the flag
    body_id = run.workflow.node_id(run.workflow.output)
    assert run.published(body) == [body_id]
    flag = advanced_flag(run.workflow.node_id(1))
    _drop_flag(any_backend, flag)
    run.advancer.succeeded(run.at(1), 1, late_ack=True)
    assert run.published(body) == [body_id, body_id]


def _drop_flag(backend: Any, key: str) -> None:
    """Simulate the crash between publishing and setting the 'advanced' flag."""
    from flowq.runtime.backends.memory import MemoryBackend
    from flowq.runtime.backends.redis import RedisBackend

    if isinstance(backend, RedisBackend):
        backend._client.delete(backend.keys.flag(key))
    elif isinstance(backend, MemoryBackend):
        backend._flags.pop(key)
    else:
        with backend._transaction() as db:
            db.execute("DELETE FROM flags WHERE key = ?", (key,))
    assert not backend.has_flag(key)


# -- workers for D1, D3, D4 --------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["redis", "embedded"])
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[FaultCluster]:
    require_servers(request.param)
    instance = FaultCluster(request.param, tmp_path_factory.mktemp(f"d-{request.param}"))
    instance.configure(app)
    instance.pool = instance.start(concurrency=2)  # type: ignore[attr-defined]
    yield instance
    instance.cleanup()
    app.close()


@pytest.fixture
def pool(shared: FaultCluster) -> FaultCluster:
    shared.configure(app)
    assert shared.pool.alive(), shared.pool.log()[-3000:]  # type: ignore[attr-defined]
    return shared


# -- D3: a member fails for good ----------------------------------------------------------------------


def test_failed_member_runs_errback_once_and_never_the_body(pool):
    """D3: one member fails: the errback runs once (with the failed task's id), the body
    never, the chord's result is a ChordError that is also the original ValueError, and
    the other members' results can still be fetched."""
    k, kb, ke = kind(), kind(), kind()
    ledger, bodies = Ledger(pool, k), Ledger(pool, kb)
    workflow, result = send_workflow(chord(
        [step.s(1, kind=k), fail.s(), step.s(2, kind=k), step.s(3, kind=k)],
        body.s(kind=kb)).on_error(on_error.s(kind=ke)))
    with pytest.raises(ChordError) as caught:
        result.get(timeout=T)
    assert isinstance(caught.value, ValueError)
    errbacks = wait_for(lambda: pool.ledger_list(ke), T, "the errback")
    others = [workflow.node_id(p) for p in (0, 2, 3)]
    assert [app.AsyncResult(i).get(timeout=T) for i in others] == [2, 3, 4]
    completed = ledger.settle(others, quiet=1.0)
    assert pool.ledger_list(ke) == errbacks == [workflow.node_id(1)]
    assert bodies.starts() == []
    assert app.AsyncResult(workflow.node_id(1)).state == states.FAILURE
    assert_total_queue(others, completed)


# -- D4: empty and single-member groups -----------------------------------------------------------------


def test_empty_group_single_member_group_and_empty_chord(pool):
    """D4: an empty group gives [], a one-member group gives a one-item list (no
    rewriting into a bare task), and a chord with no header runs its body once with []."""
    k, kb = kind(), kind()
    bodies = Ledger(pool, kb)
    assert group([]).delay().get(timeout=T) == []
    assert group([step.s(1, kind=k)]).delay().get(timeout=T) == [2]
    _, result = send_workflow(chord([], body.s(kind=kb)))
    assert result.get(timeout=T) == 0
    assert bodies.settle([result.id], quiet=0.5) == [result.id]
    assert pool.ledger_list(f"{kb}:inputs") == ["[]"]
    single = app.compile(group([step.s(1)]))
    assert [n.kind for n in single.nodes] == [TASK, JOIN]
    assert_total_queue([result.id], bodies.completed())


# -- D1: random canvases, random faults --------------------------------------------------------------

#: Faults a leaf may carry: A1-like (the child dies mid-task), A4 (killed before its
#: result is stored, or once everything is recorded) and A5 (killed after recording,
#: before publishing what comes next: the next step or a chord body, or before recording
#: that it did).
LEAF_FAULTS = [None, None, None, None, Fault.OS_EXIT, Fault.KILL_BEFORE_STORE,
               Fault.KILL_AFTER_RECORD, Fault.KILL_BEFORE_DISPATCH, Fault.KILL_BEFORE_FLAG]


def trees(max_leaves: int) -> st.SearchStrategy[Any]:
    leaf = st.tuples(st.just("leaf"), st.integers(1, 9), st.sampled_from(LEAF_FAULTS))

    def nested(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.one_of(
            st.tuples(st.just("chain"), st.lists(children, min_size=2, max_size=3)),
            st.tuples(st.just("group"), st.lists(children, min_size=1, max_size=3)),
            st.tuples(st.just("chord"), st.lists(children, min_size=1, max_size=3),
                      st.integers(1, 9)))

    return st.recursive(leaf, nested, max_leaves=max_leaves)


def build(tree: Any, k: str, faults: list[Any] | None) -> Any:
    """The canvas of ``tree``; ``faults`` (consumed in leaf order) caps how many leaves
    keep their fault; None drops every fault."""
    what = tree[0]
    if what == "leaf":
        fault = tree[2] if faults else None
        if fault and faults is not None:
            faults.pop()
        return step.s(add=tree[1], kind=k, fault=fault)
    parts = [build(child, k, faults) for child in tree[1]]
    if what == "chain":
        return chain(*parts)
    if what == "group":
        return group(parts)
    return chord(parts, step.s(add=tree[2], kind=k))


def run_with_faults(target: FaultCluster, tree: Any, max_faults: int) -> None:
    """Run ``tree`` once fault-free in this process and once on the worker with up to
    ``max_faults`` faulty leaves, then check the D1 invariants."""
    target.configure(app)
    k = kind()
    workflow, result = send_workflow(build(tree, k, [None] * max_faults))
    eager = app.compile(build(tree, kind(), None))  # same shape: positions match
    expected = run_eagerly(app, eager)
    ledger = Ledger(target, k)
    tasks = [p for p, node in enumerate(workflow.nodes) if node.kind == TASK]
    ids = {p: workflow.node_id(p) for p in range(len(workflow.nodes))}

    # the final result, and every node's own result, equal a fault-free run's
    assert result.get(timeout=T) == expected.get(timeout=T)
    assert len(eager.nodes) == len(workflow.nodes)
    for position, task_id in ids.items():  # joins too: members' results in member order
        assert app.AsyncResult(task_id).get(timeout=T) == app.AsyncResult(
            eager.node_id(position), backend=expected._bound_backend).get(timeout=T), position

    faults = {ids[p]: workflow.nodes[p].kwargs.get("fault") for p in tasks}
    faulty = {task_id for task_id, fault in faults.items() if fault}
    # Every fault fires, except a kill before a dispatch that turns out empty (a member
    # that did not complete its chord); those fire before the output can complete. A leaf
    # killed before its result was stored runs again; one killed after is redelivered and
    # skipped (recognised as finished).
    reruns = {t for t, fault in faults.items() if fault in (Fault.OS_EXIT, Fault.KILL_BEFORE_STORE)}
    skipped = {t for t, fault in faults.items()
               if fault in (Fault.KILL_AFTER_RECORD, Fault.KILL_BEFORE_FLAG)}
    wait_for(lambda: _redelivered(ledger, reruns) and _skipped(target, skipped), T,
             "every faulty leaf's message to come back")
    completed = ledger.settle([ids[p] for p in tasks], quiet=0.5)
    # every leaf ends at least once, none more than its fault allows, bodies exactly once
    assert_total_queue([ids[p] for p in tasks], completed,
                       max_completions={task_id: 2 for task_id in faulty})
    bodies = [ids[p] for p in tasks if _after_join(workflow, p) and ids[p] not in faulty]
    assert {b: completed.count(b) for b in bodies} == dict.fromkeys(bodies, 1)
    # chain order: a node starts only after everything it takes as input has ended
    first_end: dict[str, float] = {}
    for entry in ledger.ends():
        first_end.setdefault(entry.task_id, entry.at)
    first_start = {}
    for entry in ledger.starts():
        first_start.setdefault(entry.task_id, entry.at)
    for position in tasks:
        source = workflow.nodes[position].input
        if source is not None:
            assert first_start[ids[position]] >= _ready(workflow, source, ids, first_end)


def _redelivered(ledger: Ledger, faulty: set[str]) -> bool:
    starts = [s.task_id for s in ledger.starts()]
    return all(starts.count(task_id) >= 2 for task_id in faulty)


def _skipped(target: FaultCluster, task_ids: set[str]) -> bool:
    logs = "\n".join(worker.log() for worker in target.workers)
    return all(f"[{task_id}] skipped" in logs for task_id in task_ids)


def _after_join(workflow: Any, position: int) -> bool:
    source = workflow.nodes[position].input
    return source is not None and workflow.nodes[source].kind == JOIN


def _ready(workflow: Any, position: int, ids: dict[int, str], first_end: dict[str, float]
           ) -> float:
    """When node ``position``'s result existed: a task's first end, a join's last member."""
    node = workflow.nodes[position]
    if node.kind != JOIN:
        return first_end[ids[position]]
    return max((_ready(workflow, m, ids, first_end) for m in node.members), default=0.0)


FAST = settings(max_examples=3, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("shared", ["redis"], indirect=True)
@FAST
@example(tree=("chord", [("leaf", 1, None), ("leaf", 2, Fault.KILL_BEFORE_DISPATCH)], 5))
@example(tree=("chain", [("group", [("leaf", 1, Fault.KILL_AFTER_RECORD), ("leaf", 2, None)]),
                         ("chord", [("leaf", 3, Fault.OS_EXIT)], 4)]))
@given(tree=trees(max_leaves=6))
def test_random_canvases_survive_faults(shared, tree):
    """D1 (fast tier): a few canvases with at most two faulty leaves each."""
    run_with_faults(shared, tree, max_faults=2)


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("shared", ["redis"], indirect=True)
@settings(max_examples=40, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck))
@given(tree=trees(max_leaves=30))
def test_random_canvases_survive_faults_stress(shared, tree):
    """D1 (stress tier): larger canvases, up to five faulty leaves each."""
    run_with_faults(shared, tree, max_faults=5)
