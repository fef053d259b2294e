"""Groups: members run in parallel; the result is the list of their results, in order."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from flowq.canvas.frozen import EMPTY, FrozenDict
from flowq.canvas.signature import (
    Canvas,
    Frozen,
    canvas_tuple,
    freeze_options,
    frozen_field,
    refuse_assignment,
    tasks_arg,
)


@refuse_assignment
@attrs.frozen(slots=True, repr=False)
class Group(Canvas):
    """Members in parallel. A group of one is still a group: its result is a list."""

    tasks: tuple[Canvas, ...] = attrs.field(converter=canvas_tuple)
    options: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=freeze_options)
    _frozen: Frozen | None = frozen_field()

    def children(self) -> tuple[Canvas, ...]:
        return self.tasks

    def _with_immutable(self, immutable: bool) -> Group:
        return attrs.evolve(self, tasks=tuple(t._with_immutable(immutable) for t in self.tasks))

    def partial(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Group:
        if not (args or kwargs):
            return self
        return attrs.evolve(self, tasks=tuple(t.partial(args, kwargs) for t in self.tasks))

    def __call__(self, *args: Any, **options: Any) -> Any:
        return self.apply_async(args, **options)

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Canvas]:
        return iter(self.tasks)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"


def group(*tasks: Any, **options: Any) -> Group:
    """Members in parallel: ``group(a, b)``, ``group([a, b])`` or ``group(generator)``."""
    return Group(tasks_arg(tasks), options)
