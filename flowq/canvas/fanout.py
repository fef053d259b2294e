"""Fanout: one task per item of a list produced at run time (a dynamic group)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from flowq.canvas.frozen import EMPTY, FrozenDict, freeze
from flowq.canvas.signature import (
    Canvas,
    Frozen,
    Signature,
    as_canvas,
    freeze_options,
    frozen_field,
    refuse_assignment,
)


def _items(value: Any) -> tuple[Any, ...] | None:
    return None if value is None else freeze(tuple(value))


@refuse_assignment
@attrs.frozen(slots=True, repr=False)
class Fanout(Canvas):
    """Run ``task`` once per item of the list its parent returns, in parallel.

    The result is the list of their results, in item order. The width is decided at
    run time and recorded in the workflow's state when the fanout expands. At the start
    of a workflow the list comes from the first partial argument (kept in ``items``).
    """

    task: Signature
    items: tuple[Any, ...] | None = attrs.field(default=None, converter=_items)
    options: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=freeze_options)
    _frozen: Frozen | None = frozen_field()

    def children(self) -> tuple[Canvas, ...]:
        return (self.task,)

    def _with_immutable(self, immutable: bool) -> Fanout:
        return attrs.evolve(self, task=self.task._with_immutable(immutable))

    def partial(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Fanout:
        if not (args or kwargs):
            return self
        items = args[0] if args else self.items
        return attrs.evolve(self, items=items, task=self.task.partial(args[1:], kwargs))

    def __call__(self, *args: Any, **options: Any) -> Any:
        return self.apply_async(args, **options)

    def __repr__(self) -> str:
        return f"fanout({self.task!r})"


def fanout(task: Signature | Any, **options: Any) -> Fanout:
    """Run ``task`` once per item of the list the previous step returns.

    ``fetch_urls.s() | fanout(download.s()) | merge.s()`` downloads every URL in
    parallel and passes the list of downloads to ``merge``.
    """
    template = as_canvas(task)  # a bare task stands for its signature
    if not isinstance(template, Signature):
        raise TypeError(f"fanout expects a task signature, got {task!r}")
    return Fanout(template, None, options)
