"""Canvases as task arguments: they travel as dicts and ``signature()`` rebuilds them."""

from __future__ import annotations

import pytest

from flowq import Signature, chain, chord, fanout, group, signature
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


def test_a_signature_is_read_as_celerys_dict():
    sig = add.s(1, 2).set(queue="q")
    assert dict(sig) == to_dict(sig) and sig["task"] == add.name and sig.get("args") == [1, 2]
    assert sig.get("nothing", 5) == 5
    assert Signature.from_dict(dict(sig)) == sig


def test_celerys_own_dicts_are_read():
    one = {"task": add.name, "args": [1, 1], "kwargs": {}, "options": {},
           "subtask_type": None, "immutable": False}
    celery_chain = {"task": "celery.chain", "args": [], "options": {}, "immutable": False,
                    "subtask_type": "chain", "kwargs": {"tasks": [one, {**one, "args": [2]}]}}
    assert from_dict(celery_chain) == add.s(1, 1) | add.s(2)
    celery_chord = {"task": "celery.chord", "args": [], "options": {}, "immutable": False,
                    "subtask_type": "chord",
                    "kwargs": {"kwargs": {}, "header": {"task": "celery.group", "args": [],
                                                       "options": {}, "subtask_type": "group",
                                                       "kwargs": {"tasks": [one]}},
                               "body": {**one, "task": tsum.name, "args": []}}}
    assert from_dict(celery_chord) == chord([add.s(1, 1)], tsum.s())
    as_list = {**celery_chord, "kwargs": {**celery_chord["kwargs"], "header": [one]}}
    assert from_dict(as_list) == chord([add.s(1, 1)], tsum.s())


def test_a_chord_streamed_from_a_generator_does_not_become_a_dict():
    with pytest.raises(TypeError, match="give the header as a list"):
        to_dict(chord((add.s(i, i) for i in range(3)), tsum.s()))
