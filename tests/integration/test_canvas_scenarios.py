"""The canvas scenario suite, run against real workers on every configuration.

Each test sends a workflow to a worker started for the module (Redis + Redis, RabbitMQ
+ Redis, embedded SQLite) and checks its result and side effects. Side effects are
counted in a Redis ledger (a list per test) so "exactly once" is asserted, not guessed.
"""

from __future__ import annotations

import time
import uuid

import pytest

from flowq import chain, chord, fanout, group
from flowq.exceptions import ChordError, TimeoutError
from tests.integration.app import (
    add,
    app,
    collect,
    errback,
    fail,
    identity,
    make_list,
    mul,
    note,
    phase,
    square,
    tsum,
    whoami,
)

pytestmark = pytest.mark.timeout(180)
T = 60  # seconds any single result may take


def kind() -> str:
    """A ledger list name private to one test."""
    return f"k-{uuid.uuid4().hex[:8]}"


def settle(cluster, name: str, expected: int, wait: float = 1.0) -> list[str]:
    """The ledger list once it holds ``expected`` entries, after a pause to catch extras."""
    deadline = time.monotonic() + T
    while len(cluster.ledger_list(name)) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(wait)
    return cluster.ledger_list(name)


def test_simple_task(cluster):
    assert add.delay(2, 2).get(timeout=T) == 4


def test_chain_of_three(cluster):
    assert (add.s(2, 2) | add.s(4) | mul.s(3)).delay().get(timeout=T) == 24


def test_chain_with_immutable_steps(cluster):
    result = (add.s(1, 1) | add.si(10, 10) | add.s(1)).delay()
    assert result.get(timeout=T) == 21
    assert result.parent.get(timeout=T) == 20


def test_group_of_ten(cluster):
    assert group(add.s(i, i) for i in range(10)).delay().get(timeout=T) == [
        2 * i for i in range(10)]


def test_chord_of_hundred(cluster):
    assert chord([add.s(i, i) for i in range(100)], tsum.s()).delay().get(timeout=T) == 9900


def test_chord_in_chain(cluster):
    workflow = add.s(1, 1) | chord([add.s(1), add.s(2)], tsum.s()) | mul.s(10)
    assert workflow.delay().get(timeout=T) == 70


def test_group_in_chain_is_upgraded_to_chord(cluster):
    workflow = chain(add.s(1, 1), group(mul.s(2), mul.s(3)), tsum.s())
    assert workflow.delay().get(timeout=T) == 10


def test_chord_body_is_a_chain(cluster):
    workflow = chord([add.s(1, 1), add.s(2, 2)], tsum.s() | mul.s(10))
    assert workflow.delay().get(timeout=T) == 60


def test_nested_chord_in_chord_header(cluster):
    inner = chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    workflow = chord([inner, add.s(10, 10)], tsum.s())
    assert workflow.delay().get(timeout=T) == 26


def test_chain_of_chords(cluster):
    workflow = (chord([add.s(1, 1), add.s(2, 2)], tsum.s())
                | chord([add.s(1), add.s(2)], tsum.s())
                | chord([mul.s(2), mul.s(3)], tsum.s()))
    assert workflow.delay().get(timeout=T) == 75


def test_group_task_group_runs_in_strict_phases(cluster):
    workflow = (group(phase.s(i, "a") for i in range(4)) | tsum.s()
                | group(phase.s("b"), phase.s("b")))
    assert workflow.delay().get(timeout=T) == [6, 6]
    phases = [line.split(":") for line in cluster.ledger_list("phases")[-6:]]
    last_a = max(float(t) for name, t in phases if name == "a")
    first_b = min(float(t) for name, t in phases if name == "b")
    assert last_a < first_b


def test_lone_group_in_chain(cluster):
    assert chain(group(add.s(1, 1), add.s(2, 2))).delay().get(timeout=T) == [2, 4]


def test_one_member_group_is_still_a_group(cluster):
    assert group(add.s(1, 1)).delay().get(timeout=T) == [2]


def test_empty_header_chord_calls_body_with_empty_list(cluster):
    assert chord([], tsum.s()).delay().get(timeout=T) == 0


def test_chain_of_five_hundred(cluster):
    workflow = chain(add.s(0, 0), *[add.s(1) for _ in range(500)])
    assert workflow.delay().get(timeout=120) == 500


def test_chord_of_two_thousand(cluster):
    result = chord([add.s(i, 0) for i in range(2000)], tsum.s()).delay()
    assert result.get(timeout=180) == sum(range(2000))


def test_dynamic_fanout_of_two_hundred(cluster):
    workflow = make_list.s(200) | fanout(square.s()) | tsum.s()
    assert workflow.delay().get(timeout=120) == sum(i * i for i in range(200))


def test_fanout_result_is_the_ordered_list(cluster):
    assert (make_list.s(5) | fanout(square.s())).delay().get(timeout=T) == [0, 1, 4, 9, 16]


def test_failure_mid_chain_calls_errback_once_and_stops(cluster):
    runs, errs = kind(), kind()
    workflow = (add.s(1, 1) | note.s(kind=runs) | fail.s() | note.s(kind=runs)
                | note.s(kind=runs)).on_error(errback.s(kind=errs))
    result = workflow.delay()
    with pytest.raises(ValueError, match="expected failure"):
        result.get(timeout=T)
    failed_id = result.parent.parent.id
    assert settle(cluster, errs, 1) == [failed_id]
    assert len(cluster.ledger_list(runs)) == 1  # only the step before the failure
    assert result.state == "FAILURE" and result.parent.state == "FAILURE"


def test_failure_inside_chord_in_chain_raises(cluster):
    workflow = add.s(1, 1) | chord([add.s(1), fail.s()], tsum.s()) | mul.s(2)
    with pytest.raises(ValueError, match="expected failure") as info:
        workflow.delay().get(timeout=T)
    assert isinstance(info.value, ChordError)


def test_failure_in_group_after_failing_step_raises(cluster):
    workflow = fail.s(1) | group(add.s(1), add.s(2))
    with pytest.raises(ValueError, match="expected failure"):
        workflow.delay().get(timeout=T)


def test_failing_chord_header_runs_body_errback_once(cluster):
    bodies, errs = kind(), kind()
    body = collect.s(kind=bodies).on_error(errback.s(kind=errs))
    result = chord([add.s(1, 1), fail.s(2), fail.s(3)], body).delay()
    with pytest.raises(ChordError) as info:
        result.get(timeout=T)
    assert isinstance(info.value, ValueError)
    assert "tests.integration.app.fail" in str(info.value)
    assert len(settle(cluster, errs, 1)) == 1
    assert cluster.ledger_list(bodies) == []


def test_same_header_task_delivered_twice_runs_body_once(cluster):
    runs, bodies = kind(), kind()
    compiled = app.compile(chord([note.s(i, kind=runs) for i in range(3)],
                                 collect.s(kind=bodies)))
    runtime = app.runtime
    carried = runtime.workflows.carry(compiled)
    first = compiled.nodes[0]
    duplicate = runtime.builder.for_node(carried, 0, first.args, first.kwargs,
                                         root_id=compiled.seed, parent_id=None)
    runtime.advancer.start(carried, compiled.seed, None)
    runtime.publisher.publish([duplicate])  # the same header task id, delivered again
    assert app.result_for(compiled).get(timeout=T) == [0, 1, 2]
    assert len(settle(cluster, bodies, 1)) == 1
    assert len(cluster.ledger_list(runs)) in (3, 4)  # the duplicate may run, never advance


def test_send_task_by_name(cluster):
    result = app.send_task("tests.integration.app.add", args=[20, 22])
    assert result.get(timeout=T) == 42


def test_custom_task_id(cluster):
    task_id = f"custom-{uuid.uuid4()}"
    result = add.apply_async((1, 2), task_id=task_id)
    assert result.id == task_id
    assert app.AsyncResult(task_id).get(timeout=T) == 3


def test_custom_task_id_on_chain_names_its_result(cluster):
    task_id = f"chain-{uuid.uuid4()}"
    result = (add.s(1, 1) | add.s(1)).apply_async(task_id=task_id)
    assert result.id == task_id and result.get(timeout=T) == 3


@pytest.mark.parametrize("fresh_cluster", ["redis", "amqp", "embedded"], indirect=True)
def test_results_expire(fresh_cluster):
    fresh_cluster.start_worker(env={"FLOWQ_TEST_RESULT_EXPIRES": "1"})
    result = add.delay(1, 1)
    assert result.get(timeout=T) == 2
    deadline = time.monotonic() + 15
    while app.AsyncResult(result.id).state != "PENDING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert app.AsyncResult(result.id).state == "PENDING"


def test_parent_and_root_ids_of_every_node(cluster):
    workflow = whoami.s() | group(whoami.s(), whoami.s()) | whoami.s()
    result = workflow.delay()
    last = result.get(timeout=T)
    join = result.parent
    first = join.results[0].parent
    first_seen = first.get(timeout=T)
    root = first.id
    assert first_seen == {"id": root, "root_id": root, "parent_id": None, "group": None,
                          "group_index": None}
    members = [m.get(timeout=T) for m in join.results]
    assert [m["group_index"] for m in members] == [0, 1]
    assert all(m["root_id"] == root and m["parent_id"] == root and m["group"] == join.id
               for m in members)
    assert last["parent_id"] == join.id and last["root_id"] == root


def test_parent_and_root_ids_through_fanout_items_and_nested_chords(cluster):
    inner = chord([whoami.s()], whoami.s())
    workflow = make_list.s(2) | fanout(whoami.s()) | chord([whoami.s(), inner], whoami.s())
    result = workflow.delay()
    body = result.get(timeout=T)
    header = result.parent
    fan = header.parent
    root = fan.parent.id
    assert fan.parent.parent is None
    items = fan.get(timeout=T)  # each item is a task of its own, numbered in the fanout
    assert [(i["parent_id"], i["group"], i["group_index"]) for i in items] == [
        (root, fan.id, 0), (root, fan.id, 1)]
    member, inner_body = header.get(timeout=T)
    assert member["parent_id"] == fan.id and member["group"] == header.id
    assert inner_body["parent_id"] == header.results[1].parent.id  # the inner header's join
    assert body["parent_id"] == header.id
    assert {seen["root_id"] for seen in (*items, member, inner_body, body)} == {root}


def test_link_error_given_to_apply_async_runs_once_for_a_failed_chain(cluster):
    errs = kind()
    result = (add.s(1, 1) | fail.s() | add.s(1)).apply_async(link_error=errback.s(kind=errs))
    with pytest.raises(ValueError, match="expected failure"):
        result.get(timeout=T)
    assert settle(cluster, errs, 1) == [result.parent.id]


def test_get_times_out_with_flowq_timeout_error(cluster):
    result = app.AsyncResult(f"never-{uuid.uuid4()}")
    with pytest.raises(TimeoutError):
        result.get(timeout=0.5)


def test_identity_round_trips_json_types(cluster):
    value = {"a": [1, 2.5, None, True], "b": {"c": "d"}}
    assert identity.delay(value).get(timeout=T) == value


def test_group_result_save_and_restore(cluster):
    result = group(add.s(i, 1) for i in range(4)).delay()
    result.save()
    restored = app.GroupResult.restore(result.id)
    assert restored is not None and [r.id for r in restored] == [r.id for r in result]
    assert restored.get(timeout=T) == [1, 2, 3, 4]
    assert restored.completed_count() == 4 and restored.ready() and restored.successful()
    restored.delete()
    assert app.GroupResult.restore(result.id) is None


def test_forget_deletes_the_result(cluster):
    result = add.delay(1, 1)
    assert result.get(timeout=T) == 2
    result.forget()
    assert app.AsyncResult(result.id).state == "PENDING"


def test_failure_carries_the_remote_traceback(cluster):
    result = fail.delay("x")
    with pytest.raises(ValueError) as info:
        result.get(timeout=T)
    assert "Traceback" in result.traceback and "in fail" in result.traceback
    assert any("remote traceback" in note for note in getattr(info.value, "__notes__", []))
    assert isinstance(result.get(timeout=T, propagate=False), ValueError)
    assert result.failed() and not result.successful() and result.ready()


def test_children_of_a_chain_step(cluster):
    result = (add.s(1, 1) | group(add.s(1), add.s(2))).delay()
    assert result.get(timeout=T) == [3, 4]
    first = result.results[0].parent
    assert sorted(c.id for c in first.children) == sorted(r.id for r in result.results)
