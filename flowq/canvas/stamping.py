"""Stamping: labels put on every task of a workflow and carried to the workers.

Celery 5.3's stamping API. ``canvas.stamp(**stamps)`` returns a copy of the canvas in
which every task signature (inside chains, groups, chord headers and bodies, links and
errbacks) carries the stamps; ``canvas.stamp(visitor=v)`` lets a
:class:`StampingVisitor` decide the stamps part by part::

    class MonitoringId(StampingVisitor):
        def on_signature(self, sig, **headers):
            return {"monitoring_id": uuid4().hex}

    workflow = workflow.stamp(visitor=MonitoringId())   # a new canvas: keep it

A signature keeps its stamps in its options, as Celery does: each stamp under its own
name, and their names under ``stamped_headers``. Messages carry them in the
``stamped_headers`` and ``stamps`` headers, tasks see them as ``self.request.stamps``,
and ``app.control.revoke_by_stamped_headers`` revokes by them.

A visitor method returns a dict of stamps; when it also holds ``stamped_headers``, only
the keys listed there are stamps and the others are call options (``queue``...) for the
parts below. Stamp names may not be call option names, and values must be JSON.
Stamping a name a signature already has replaces its value, or with
``append_stamps=True`` makes a list of the old and new values.
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from flowq.canvas.options import check_stamp
from flowq.exceptions import InvalidWorkflow

if TYPE_CHECKING:
    from flowq.canvas.chain import Chain
    from flowq.canvas.chord import Chord
    from flowq.canvas.group import Group
    from flowq.canvas.signature import Canvas, Signature
    from flowq.canvas.stream import Stream

P = TypeVar("P", bound="Canvas")
#: Deepest nesting stamping walks (compiling refuses deeper canvases anyway).
MAX_DEPTH = 200


class StampingVisitor(abc.ABC):
    """Decides the stamps of each part of a canvas (Celery's ``StampingVisitor``).

    Every method gets the part and, as keywords, the stamps coming from above; the
    ``*_start`` methods and :meth:`on_signature` return the stamps to add (a dict),
    ``*_end`` methods return nothing. Only :meth:`on_signature` must be written.
    """

    def on_group_start(self, group: Group | Stream, **headers: Any) -> dict[str, Any]:
        return {}

    def on_group_end(self, group: Group | Stream, **headers: Any) -> None:
        return None

    def on_chain_start(self, chain: Chain, **headers: Any) -> dict[str, Any]:
        return {}

    def on_chain_end(self, chain: Chain, **headers: Any) -> None:
        return None

    @abc.abstractmethod
    def on_signature(self, sig: Signature, **headers: Any) -> dict[str, Any]:
        """The stamps of one task signature."""

    def on_chord_header_start(self, chord: Chord, **headers: Any) -> dict[str, Any]:
        return self.on_group_start(chord.header, **headers)

    def on_chord_header_end(self, chord: Chord, **headers: Any) -> None:
        self.on_group_end(chord.header, **headers)

    def on_chord_body(self, chord: Chord, **headers: Any) -> dict[str, Any]:
        return {}

    def on_callback(self, callback: Canvas, **headers: Any) -> dict[str, Any]:
        return {}

    def on_errback(self, errback: Canvas, **headers: Any) -> dict[str, Any]:
        return {}


@attrs.frozen(slots=True)
class _Flow:
    """What flows down to a part: stamps, and plain options a visitor asked for."""

    stamps: dict[str, Any]
    options: dict[str, Any]

    def keywords(self) -> dict[str, Any]:
        """What visitor methods receive: Celery passes stamps with their names."""
        return {**self.options, **self.stamps, "stamped_headers": list(self.stamps)}


def stamp(canvas: Canvas, visitor: StampingVisitor | None, append: bool,
          headers: Mapping[str, Any]) -> Canvas:
    """``canvas`` with ``headers`` and ``visitor``'s stamps on every signature inside."""
    if visitor is not None and not isinstance(visitor, StampingVisitor):
        raise InvalidWorkflow([("stamp", (f"visitor must be a StampingVisitor, got "
                                          f"{type(visitor).__name__}"))])
    return _Stamper(visitor, append).visit(canvas, _merge(_Flow({}, {}), headers, append), 0)


def _merge(flow: _Flow, reply: Mapping[str, Any] | None, append: bool) -> _Flow:
    """``flow`` with a visitor's reply (or ``stamp()``'s keywords) added."""
    if not reply:
        return flow
    if not isinstance(reply, Mapping):
        raise InvalidWorkflow([("stamp", (f"a stamping visitor must return a dict, got "
                                          f"{type(reply).__name__}"))])
    listed = reply.get("stamped_headers")
    names = [k for k in reply if k != "stamped_headers"] if listed is None else list(listed)
    new = {name: reply[name] for name in names if name in reply}
    for name, value in new.items():
        problem = check_stamp(name, value)
        if problem:
            raise InvalidWorkflow([("stamp", problem)])
    options = {**flow.options, **{k: v for k, v in reply.items()
                                  if k != "stamped_headers" and k not in new}}
    return _Flow(_combined(flow.stamps, new, append), options)


def _combined(old: Mapping[str, Any], new: Mapping[str, Any], append: bool) -> dict[str, Any]:
    """``old`` updated by ``new``; with ``append``, a name in both gets a list of both."""
    stamps = dict(old)
    for name, value in new.items():
        stamps[name] = [*_listed(stamps[name]), *_listed(value)] if (
            append and name in stamps) else value
    return stamps


def _listed(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _Stamper:
    """One walk over a canvas (recursive: canvases nest at most :data:`MAX_DEPTH` deep).

    Visitor methods are called in Celery's order: a part's start method, its links and
    errbacks, its children, its end method.
    """

    def __init__(self, visitor: StampingVisitor | None, append: bool):
        self.visitor = visitor
        self.append = append

    def visit(self, canvas: Canvas, flow: _Flow, depth: int) -> Canvas:
        from flowq.canvas.chain import Chain
        from flowq.canvas.chord import Chord
        from flowq.canvas.fanout import Fanout
        from flowq.canvas.group import Group
        from flowq.canvas.signature import Signature

        if depth > MAX_DEPTH:
            raise InvalidWorkflow([("stamp", f"canvas nested deeper than {MAX_DEPTH} levels")])
        if isinstance(canvas, Signature):
            return self._signature(canvas, flow, depth)
        if isinstance(canvas, Fanout):
            fan = self._links(canvas, flow, depth)
            return attrs.evolve(fan, task=self._signature(fan.task, flow, depth))
        if isinstance(canvas, Chain):
            inner = self._ask("on_chain_start", canvas, flow)
            linked = self._links(canvas, inner, depth)
            steps = tuple(self.visit(step, inner, depth + 1) for step in linked.tasks)
            self._tell("on_chain_end", canvas, inner)
            return attrs.evolve(linked, tasks=steps)
        if isinstance(canvas, Group):
            inner = self._ask("on_group_start", canvas, flow)
            stamped = self._members(canvas, inner, depth)
            self._tell("on_group_end", canvas, inner)
            return stamped
        if isinstance(canvas, Chord):
            return self._chord(canvas, flow, depth)
        raise InvalidWorkflow([("stamp", f"not a workflow shape: {canvas!r}")])

    def _members(self, group: Group, flow: _Flow, depth: int) -> Group:
        group = self._links(group, flow, depth)
        return attrs.evolve(group, tasks=tuple(self.visit(member, flow, depth + 1)
                                               for member in group.tasks))

    def _chord(self, chord: Chord, flow: _Flow, depth: int) -> Chord:
        from flowq.canvas.group import Group

        header_flow = self._ask("on_chord_header_start", chord, flow)
        chord = self._links(chord, header_flow, depth)
        header: Any
        if isinstance(chord.header, Group):
            header = self._members(chord.header, header_flow, depth + 1)
        else:  # a header streamed from a generator: each member is stamped as it is taken
            streamed = self._links(chord.header, header_flow, depth + 1)
            stamp_member = functools.partial(self.visit, flow=header_flow, depth=depth + 2)
            header = attrs.evolve(streamed, steps=(*streamed.steps, ("stamp", stamp_member)))
        self._tell("on_chord_header_end", chord, header_flow)
        body = chord.body
        if body is not None:
            body = self.visit(body, self._ask("on_chord_body", chord, header_flow), depth + 1)
        return attrs.evolve(chord, header=header, body=body)

    def _signature(self, sig: Signature, flow: _Flow, depth: int) -> Signature:
        # links get the stamps from above (not this signature's own), as in Celery
        sig = self._links(sig, flow, depth)
        own = self._ask("on_signature", sig, flow)
        existing = {name: sig.options[name] for name in sig.options.get("stamped_headers", ())
                    if name in sig.options}
        stamps = _combined(existing, own.stamps, self.append)
        return sig._merged({**own.options, **stamps, "stamped_headers": tuple(stamps)})

    def _links(self, canvas: P, flow: _Flow, depth: int) -> P:
        """``canvas`` with its success callbacks and errbacks stamped."""
        changes = {}
        for name, hook in (("link", "on_callback"), ("link_error", "on_errback")):
            links = canvas.options.get(name)
            if links:
                changes[name] = tuple(self.visit(link, self._ask(hook, link, flow), depth + 1)
                                      for link in links)
        return canvas._merged(changes) if changes else canvas

    def _ask(self, hook: str, part: Any, flow: _Flow) -> _Flow:
        if self.visitor is None:
            return flow
        method: Callable[..., Any] = getattr(self.visitor, hook)
        return _merge(flow, method(part, **flow.keywords()), self.append)

    def _tell(self, hook: str, part: Any, flow: _Flow) -> None:
        if self.visitor is not None:
            getattr(self.visitor, hook)(part, **flow.keywords())
