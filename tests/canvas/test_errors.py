"""One error model: a failure fails everything downstream; errbacks run once per scope."""

from __future__ import annotations

import pytest

from flowq import Flowq, chain, chord, group, states
from flowq.canvas import fanout
from flowq.exceptions import ChordError

from .helpers import states as states_of
from .tasks import (
    ERRBACKS,
    RUNS,
    TwoPartError,
    add,
    collect,
    errback,
    fail,
    fail_key,
    fail_two,
    numbers,
    process,
    tsum,
)


def test_a_failed_step_fails_everything_downstream_which_never_runs(app: Flowq) -> None:
    c = chain(add.s(1, 1).set(task_id="wf-1"), fail.s(), add.s(1), add.s(2))
    ids = app.compile(c).ids()
    result = c.apply()
    with pytest.raises(ValueError) as info:
        result.get(timeout=5)
    assert type(info.value) is ValueError  # the original type, not a wrapper
    assert str(info.value) == "boom"
    assert states_of(result) == {ids[0]: states.SUCCESS, ids[1]: states.FAILURE,
                                 ids[2]: states.FAILURE, ids[3]: states.FAILURE}
    assert RUNS == {"add": 1, "fail": 1}


def test_the_failed_nodes_error_is_kept_with_its_message() -> None:
    result = (add.s(1, 1) | fail.s(message="disk full") | add.s(1)).apply()
    with pytest.raises(ValueError) as info:
        result.get(timeout=5)
    assert str(info.value) == "disk full"
    assert isinstance(result.result, ValueError)
    assert str(result.parent.result) == "disk full"
    assert result.parent.traceback and "ValueError: disk full" in result.parent.traceback


def test_a_failed_chord_header_raises_a_chord_error_of_the_original_type(app: Flowq) -> None:
    c = chord([add.s(1, 1), fail.s(), add.s(2, 2)], tsum.s()) | add.s(1)
    result = c.apply()
    with pytest.raises(ChordError) as info:
        result.get(timeout=5)
    error = info.value
    assert isinstance(error, ValueError)
    assert str(error).startswith("boom (chord member ")
    assert error.failed_task == fail.name
    assert RUNS["tsum"] == 0 and RUNS["add"] == 2
    assert result.state == states.FAILURE
    # except ValueError catches it too
    with pytest.raises(ValueError):
        result.get(timeout=5)


def test_a_chain_keeps_an_exception_whose_constructor_needs_two_arguments() -> None:
    with pytest.raises(TwoPartError) as info:
        (fail_two.s() | add.s(1)).apply().get(timeout=5)
    assert info.value.args == (7, "bad")


def test_a_chord_error_is_also_the_original_type_whatever_its_constructor() -> None:
    with pytest.raises(ChordError) as info:
        chord([fail_two.s()], tsum.s()).apply().get(timeout=5)
    assert isinstance(info.value, TwoPartError)


def test_a_failed_chord_body_raises_the_original_error() -> None:
    with pytest.raises(ValueError) as info:
        chord([add.s(1, 1)], fail.s()).apply().get(timeout=5)
    assert str(info.value) == "boom"
    assert not isinstance(info.value, ChordError)


def test_a_failed_group_member_raises_the_original_error() -> None:
    result = group(fail_key.s(), add.s(1, 1)).apply()
    with pytest.raises(KeyError, match="missing"):
        result.get(timeout=5)
    values = result.get(timeout=5, propagate=False)
    assert isinstance(values[0], KeyError) and values[1] == 2


def test_a_failure_before_a_fanout_means_no_item_runs() -> None:
    result = (fail.s() | fanout(process.s()) | tsum.s()).apply()
    with pytest.raises(ValueError):
        result.get(timeout=5)
    assert RUNS["process"] == 0 and RUNS["tsum"] == 0


def test_a_failed_fanout_item_fails_the_fanout_and_its_body() -> None:
    result = (numbers.s(3) | fanout(fail.s()) | tsum.s()).apply()
    with pytest.raises(ValueError, match=r"^boom"):
        result.get(timeout=5)
    assert RUNS["fail"] == 3 and RUNS["tsum"] == 0


# -- errbacks ----------------------------------------------------------------------------------


def failing_chord():
    return chain(add.s(1, 1).set(task_id="wf-eb"),
                 chord([add.s(1), fail.s(), fail.s(message="second")], tsum.s()), add.s(1))


@pytest.mark.parametrize("how", ["on_error", "apply-link_error"])
def test_workflow_errback_runs_once_with_the_failed_nodes_id(app: Flowq, how: str) -> None:
    c = failing_chord()
    if how == "on_error":
        c = c.on_error(errback.s())
        result = c.apply()
        ids = app.compile(c).ids()
    else:
        result = c.apply(link_error=errback.s())
        ids = app.compile(c, options={"link_error": errback.s()}).ids()
    with pytest.raises(ValueError):
        result.get(timeout=5)
    # two header members failed; the errback ran once, with the first failure's id
    assert RUNS["fail"] == 2
    assert RUNS["errback"] == 1
    assert len(ERRBACKS) == 1
    assert ERRBACKS in ([(ids[2],)], [(ids[3],)])  # whichever member failed first


def test_errback_partial_arguments_come_after_the_failed_id(app: Flowq) -> None:
    c = chain(fail.s().set(task_id="wf-eb2"), add.s(1)).on_error(errback.s("extra", 1))
    with pytest.raises(ValueError):
        c.apply().get(timeout=5)
    assert ERRBACKS == [("wf-eb2", "extra", 1)]


def test_an_immutable_errback_does_not_receive_the_id() -> None:
    c = chain(fail.s(), add.s(1)).on_error(errback.si("only"))
    with pytest.raises(ValueError):
        c.apply().get(timeout=5)
    assert ERRBACKS == [("only",)]


def test_no_errback_runs_when_nothing_fails() -> None:
    assert chain(add.s(1, 1), add.s(1)).on_error(errback.s()).apply().get(timeout=5) == 3
    assert RUNS["errback"] == 0


def test_errbacks_run_once_per_failed_scope(app: Flowq) -> None:
    inner = chain(fail.s(), add.s(1)).on_error(errback.s("inner"))
    c = chain(add.s(1, 1).set(task_id="wf-scopes"), inner, add.s(2)).on_error(errback.s("outer"))
    ids = app.compile(c).ids()
    with pytest.raises(ValueError):
        c.apply().get(timeout=5)
    assert sorted(ERRBACKS) == [(ids[1], "inner"), (ids[1], "outer")]


def test_a_scope_downstream_of_the_failure_fails_too_and_runs_its_errback(app: Flowq) -> None:
    # the inner chain never runs, but its nodes are FAILED, so its errback runs (once)
    inner = chain(add.s(1), add.s(1)).on_error(errback.s("inner"))
    c = chain(fail.s().set(task_id="wf-down"), inner)
    with pytest.raises(ValueError):
        c.apply().get(timeout=5)
    assert ERRBACKS == [("wf-down", "inner")]
    assert RUNS["add"] == 0


def test_a_scope_upstream_of_the_failure_runs_no_errback() -> None:
    first = chain(add.s(1, 1), add.s(1)).on_error(errback.s("first"))
    with pytest.raises(ValueError):
        chain(first, fail.s()).apply().get(timeout=5)
    assert ERRBACKS == []


@pytest.mark.parametrize("build", [
    pytest.param(lambda header: header | tsum.s(), id="group-pipe-body"),
    pytest.param(lambda header: chord(header, tsum.s()), id="chord"),
    pytest.param(lambda header: chain(add.s(1, 1), header, tsum.s()), id="chain-group-step"),
])
def test_a_groups_errback_stays_when_the_group_becomes_a_chord_header(app: Flowq, build) -> None:
    header = group(fail.s().set(task_id="wf-header"), collect.s()).on_error(errback.s("header"))
    with pytest.raises(ValueError):
        build(header).apply().get(timeout=5)
    assert ERRBACKS == [("wf-header", "header")]
    assert RUNS["tsum"] == 0
