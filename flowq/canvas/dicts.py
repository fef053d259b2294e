"""Canvases as plain dicts, so a signature (or any workflow) can be a task argument.

A canvas inside a task's arguments travels as a dict, as Celery sends signatures, and
the task rebuilds it with ``flowq.signature(value)``::

    @app.task
    def process(data, callback):
        signature(callback).delay(transform(data))

    process.delay(data, callback=notify.s())

A signature's dict has Celery's keys (``task``, ``args``, ``kwargs``, ``options``,
``immutable``, ``subtask_type`` None); a chain's or group's has ``tasks``, a chord's
``header`` and ``body``, a fanout's ``task`` and ``items``, with ``subtask_type`` naming
the shape.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from flowq.canvas.chain import Chain
from flowq.canvas.chord import Chord
from flowq.canvas.fanout import Fanout
from flowq.canvas.frozen import thaw
from flowq.canvas.group import Group
from flowq.canvas.signature import Canvas, Signature
from flowq.canvas.stream import Stream
from flowq.exceptions import InvalidWorkflow

C = TypeVar("C", bound=Canvas)


def to_dict(canvas: Canvas) -> dict[str, Any]:
    """``canvas`` as JSON-shaped values (nested canvases, links included, as dicts)."""
    options = thaw(canvas.options)
    if isinstance(canvas, Signature):
        return {"task": canvas.task, "args": list(thaw(canvas.args)), "kwargs": thaw(canvas.kwargs),
                "options": options, "immutable": canvas.immutable, "subtask_type": None}
    if isinstance(canvas, (Chain, Group)):
        kind = "chain" if isinstance(canvas, Chain) else "group"
        return {"subtask_type": kind, "tasks": [to_dict(t) for t in canvas.tasks],
                "options": options}
    if isinstance(canvas, Chord):
        return {"subtask_type": "chord", "header": to_dict(canvas.header),
                "body": None if canvas.body is None else to_dict(canvas.body),
                "options": options}
    if isinstance(canvas, Stream):
        raise TypeError("a chord whose header is a generator cannot become a dict (that would "
                        "take every member from the generator first); give the header as a list")
    if isinstance(canvas, Fanout):
        return {"subtask_type": "fanout", "task": to_dict(canvas.task),
                "items": None if canvas.items is None else thaw(canvas.items),
                "options": options}
    raise TypeError(f"not a canvas: {canvas!r}")


def from_dict(value: Mapping[str, Any], app: Any = None) -> Canvas:
    """The canvas :func:`to_dict` made ``value`` from, or that Celery's own dict of a
    signature, chain, group or chord describes (its parts under ``kwargs``). Raises
    InvalidWorkflow naming what is missing or unknown."""
    kind = value.get("subtask_type")
    options = _options(value.get("options") or {}, app)
    inner = value.get("kwargs") if kind is not None else None  # Celery keeps parts there
    if isinstance(inner, Mapping):
        value = {**inner, **value}
    try:
        if kind is None:
            return Signature(value["task"], value.get("args") or (), value.get("kwargs") or {},
                             options, bool(value.get("immutable", False)), app)
        if kind in ("chain", "group"):
            parts = [from_dict(part, app) for part in value["tasks"]]
            return Chain(parts, options) if kind == "chain" else Group(parts, options)
        if kind == "chord":
            body, header = value.get("body"), value["header"]
            if not isinstance(header, Mapping):  # a list of signatures
                header = {"subtask_type": "group", "tasks": header}
            header_group = _of(Group, from_dict(header, app), "a chord's header")
            return Chord(header_group, None if body is None else from_dict(body, app), options)
        if kind == "fanout":
            task = _of(Signature, from_dict(value["task"], app), "a fanout's task")
            return Fanout(task, value.get("items"), options)
    except KeyError as missing:
        raise InvalidWorkflow([(str(kind or "signature"),
                                f"a {kind or 'signature'} dict needs the key {missing}")]) from None
    raise InvalidWorkflow([("subtask_type", f"unknown canvas type {kind!r}; expected None, "
                                            f"'chain', 'group', 'chord' or 'fanout'")])


def _of(expected: type[C], canvas: Canvas, what: str) -> C:
    if not isinstance(canvas, expected):
        raise InvalidWorkflow([(what, f"{what} must be a {expected.__name__.lower()}, "
                                      f"got {type(canvas).__name__.lower()}")])
    return canvas


def _options(options: Mapping[str, Any], app: Any) -> dict[str, Any]:
    """Options with their ``link``/``link_error`` dicts made canvases again."""
    rebuilt = dict(options)
    for name in ("link", "link_error"):
        if name in rebuilt:
            links = rebuilt[name]
            links = [links] if isinstance(links, Mapping) else links
            rebuilt[name] = [from_dict(link, app) if isinstance(link, Mapping) else link
                             for link in links]
    return rebuilt
