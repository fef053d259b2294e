"""Errbacks are called by arity, as Celery calls them (eager runs: the worker's code)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from flowq import Flowq, _state
from flowq.exceptions import InvalidWorkflow

seen: list[Any] = []
app = Flowq("arity", broker="memory://", backend="memory://",
            accept_content=["json", "pickle"])


@app.task
def boom(value):
    raise ValueError(f"boom {value!r}")


@app.task
def new_style(request, exc, traceback, note):
    seen.append((request.id, request.task, request.args, type(exc), note))


@app.task
def old_style(task_id, note="", *more):
    seen.append((task_id, note))


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    current = _state.current_app()
    _state.set_current_app(app)
    seen.clear()
    yield
    _state.set_current_app(current)


def test_three_required_arguments_get_request_exception_and_traceback() -> None:
    result = boom.s(1).on_error(new_style.s("n")).apply()
    assert seen == [(result.id, boom.name, (1,), ValueError, "n")]


def test_other_errbacks_get_the_failed_id() -> None:
    result = boom.s(1).on_error(old_style.s(note="o")).apply()
    assert seen == [(result.id, "o")]


def test_a_new_style_errback_whose_serializer_cannot_carry_the_arguments_gets_none() -> None:
    # the failed task got a set (pickle); the errback's message is JSON: it still runs,
    # told the failed run's request without its arguments
    boom.s({1, 2}).set(serializer="pickle").on_error(
        new_style.s("n").set(serializer="json")).apply()
    assert [(task, args) for _, task, args, _, _ in seen] == [(boom.name, ())]


def test_validation_counts_what_each_style_receives() -> None:
    app.validate(boom.s(1).on_error(new_style.s("n")))  # 3 given by the worker + 1
    app.validate(boom.s(1).on_error(old_style.s("o", "p")))  # the id + 2
    with pytest.raises(InvalidWorkflow, match="cannot be called with the failed task's id"):
        app.validate(boom.s(1).on_error(old_style.s(note="o", task_id="x")))
