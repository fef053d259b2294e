"""Canvases as task arguments: they travel as dicts and ``signature()`` rebuilds them."""

from __future__ import annotations

import pytest

from flowq import chain, chord, fanout, group, signature
from flowq.canvas.dicts import from_dict, to_dict
from flowq.canvas.frozen import thaw
from flowq.exceptions import InvalidWorkflow
from tests.canvas.tasks import add, app, errback, ident, process, tsum

SHAPES = {
    "signature": add.s(1, 2).set(queue="q", countdown=3),
    "immutable with errback": add.si(1, 1).on_error(errback.s()),
    "chain": chain(add.s(1, 1), add.s(2)).set(priority=5),
    "group": group(add.s(1, 1), add.s(2, 2)),
    "chord": chord([add.s(1, 1), add.s(2, 2)], tsum.s()),
    "chord without body": chord([add.s(1, 1)]),
    "fanout": fanout(process.s()),
}


@pytest.mark.parametrize("canvas", SHAPES.values(), ids=SHAPES.keys())
def test_every_shape_round_trips_through_its_dict(canvas):
    assert from_dict(to_dict(canvas)) == canvas
    assert signature(thaw(canvas)) == canvas  # what a task receives, rebuilt


def test_a_signature_dict_has_celerys_keys():
    assert to_dict(add.s(1, 2)) == {"task": add.name, "args": [1, 2], "kwargs": {},
                                    "options": {}, "immutable": False, "subtask_type": None}


def test_a_signature_argument_arrives_as_a_dict_and_can_be_called():
    received = ident.s(add.s(2, 3)).apply().get()
    assert received["task"] == add.name
    assert signature(received, app=app).apply().get() == 5


@pytest.mark.parametrize(("value", "message"), [
    ({"args": [1]}, "a signature dict needs the key 'task'"),
    ({"subtask_type": "chain"}, "a chain dict needs the key 'tasks'"),
    ({"subtask_type": "loop", "tasks": []}, "unknown canvas type 'loop'"),
])
def test_a_malformed_dict_is_an_invalid_workflow(value, message):
    with pytest.raises(InvalidWorkflow, match=message):
        from_dict(value)
