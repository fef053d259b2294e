"""fanout: one task per item of a list produced at run time, results in item order."""

from __future__ import annotations

import pytest

from flowq import Flowq, chain
from flowq.canvas import Fanout, fanout
from flowq.exceptions import InvalidWorkflow

from .helpers import run
from .tasks import RUNS, add, numbers, process, tsum


def test_fanout_runs_one_task_per_item_in_order() -> None:
    assert run(numbers.s(4) | fanout(process.s())) == [0, 10, 20, 30]
    assert RUNS["process"] == 4


def test_fanout_followed_by_a_body() -> None:
    assert run(numbers.s(4) | fanout(process.s()) | tsum.s()) == 60


def test_fanout_items_go_in_front_of_the_templates_arguments() -> None:
    assert run(numbers.s(3) | fanout(process.s(factor=2))) == [0, 2, 4]
    assert run(numbers.s(3) | fanout(process.s(3))) == [0, 3, 6]


def test_fanout_of_an_empty_list_is_an_empty_list() -> None:
    assert run(numbers.s(0) | fanout(process.s())) == []
    assert run(numbers.s(0) | fanout(process.s()) | tsum.s()) == 0
    assert RUNS["process"] == 0


def test_fanout_of_a_non_list_fails_with_a_clear_type_error() -> None:
    result = (add.s(1, 1) | fanout(process.s()) | tsum.s()).apply()
    with pytest.raises(TypeError, match=rf"^fanout\({process.name}\) needs a list from its "
                                        r"parent, got int$"):
        result.get(timeout=5)
    assert RUNS["process"] == 0 and RUNS["tsum"] == 0
    assert result.state == "FAILURE"


def test_fanout_at_the_start_takes_its_list_from_the_first_partial_argument() -> None:
    assert fanout(process.s()).apply(args=([1, 2, 3],)).get(timeout=5) == [10, 20, 30]
    # the remaining partial arguments reach the template, after the item
    assert fanout(process.s()).apply(args=([1, 2], 5)).get(timeout=5) == [5, 10]
    assert chain(fanout(process.s()), tsum.s()).apply(args=([1, 2],)).get(timeout=5) == 30


def test_fanout_at_the_start_without_a_list_is_rejected(app: Flowq) -> None:
    with pytest.raises(InvalidWorkflow) as info:
        app.validate(fanout(process.s()))
    assert str(info.value) == ("invalid workflow: fanout: fanout at the start of a workflow "
                               "needs its list: pass it as the first argument")


def test_fanout_is_one_node_whose_width_is_decided_at_run_time(app: Flowq) -> None:
    workflow = app.compile(numbers.s(3) | fanout(process.s()) | tsum.s())
    assert [node.kind for node in workflow.nodes] == ["task", "fanout", "task"]
    assert workflow.nodes[1].path == "chain[1].fanout"


def test_fanout_needs_a_task_signature() -> None:
    with pytest.raises(TypeError, match="fanout expects a task signature"):
        fanout(add.s(1) | add.s(2))  # type: ignore[arg-type]


def test_fanout_is_an_immutable_value() -> None:
    f = fanout(process.s())
    g = f.set(queue="q")
    assert isinstance(g, Fanout) and g != f and "queue" not in f.options
    assert fanout(process.s()) == f
