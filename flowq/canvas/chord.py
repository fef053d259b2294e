"""Chords: a group (the header) whose list of results is passed to a body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from flowq.canvas.frozen import EMPTY, FrozenDict
from flowq.canvas.group import Group
from flowq.canvas.stream import Stream, is_stream_source
from flowq.canvas.signature import (
    Canvas,
    Frozen,
    as_canvas,
    freeze_options,
    frozen_field,
    refuse_assignment,
    tasks_arg,
)


@refuse_assignment
@attrs.frozen(slots=True, repr=False)
class Chord(Canvas):
    """The body runs once, after every header member, with their results in order.

    An empty header calls the body with ``[]``. A chord without a body cannot be sent.
    """

    header: Group | Stream
    body: Canvas | None = attrs.field(default=None, converter=lambda body: _body(body))
    options: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=freeze_options)
    _frozen: Frozen | None = frozen_field()

    @property
    def tasks(self) -> tuple[Canvas, ...]:
        return self.header.tasks

    @property
    def streamed(self) -> bool:
        """Whether the header is taken from a generator while the chord is sent."""
        return isinstance(self.header, Stream)

    def children(self) -> tuple[Canvas, ...]:
        return (self.header,) if self.body is None else (self.header, self.body)

    def result_part(self) -> Canvas | None:
        return self.body

    def _with_immutable(self, immutable: bool) -> Chord:
        return attrs.evolve(self, header=self.header._with_immutable(immutable))

    def partial(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Chord:
        return attrs.evolve(self, header=self.header.partial(args, kwargs))

    def __call__(self, body: Canvas | None = None, **options: Any) -> Any:
        """``chord(header)(body)``: send the chord with ``body`` and return its result."""
        whole = self if body is None else attrs.evolve(self, body=body)
        return whole.apply_async(**options)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"


def _body(value: Any) -> Canvas | None:
    body = None if value is None else as_canvas(value)
    if value is not None and body is None:
        raise TypeError(f"a chord's body must be a signature, got {value!r}")
    return body


def chord(header: Any, body: Canvas | None = None, **options: Any) -> Chord:
    """``chord(header, body)`` or ``chord(header)(body)``; ``header`` is a group, a list
    or a generator, which is taken from lazily, in batches, while the chord is sent
    (see :mod:`flowq.canvas.stream`)."""
    if is_stream_source(header):
        header = Stream(header)
    elif not isinstance(header, Group):
        header = Group(tasks_arg((header,)))
    return Chord(header, body, options)
