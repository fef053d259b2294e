"""Chains: steps run one after another, each receiving its parent's result first."""

from __future__ import annotations

from collections.abc import Mapping
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
from flowq.canvas.steps import Steps


def _steps(value: Any) -> Steps:
    return value if isinstance(value, Steps) else Steps(canvas_tuple(value))


@refuse_assignment
@attrs.frozen(slots=True, repr=False)
class Chain(Canvas):
    """Steps in sequence. The chain's result (and id) is its last step's.

    ``Chain(tasks, options)``; the steps are kept as :class:`Steps`, shared with the
    chain this one was built from by ``|``, so ``a | b | c | ...`` is linear.
    """

    _steps: Steps = attrs.field(alias="tasks", converter=_steps)
    options: FrozenDict[str, Any] = attrs.field(default=EMPTY, converter=freeze_options)
    _frozen: Frozen | None = frozen_field()

    @property
    def tasks(self) -> tuple[Canvas, ...]:
        """The steps, in order (flattened on first use, then cached)."""
        return self._steps.as_tuple()

    def children(self) -> tuple[Canvas, ...]:
        return self.tasks

    def result_part(self) -> Canvas | None:
        return self._steps.last

    def then(self, step: Canvas) -> Chain:
        """These steps followed by ``step`` under the rules of ``|`` (see
        :mod:`flowq.canvas.compose`), without this chain's options. O(1) per step added:
        these steps are shared, not copied."""
        from flowq.canvas.compose import push_step

        last = self._steps.last
        tail: list[Canvas] = [] if last is None else [last]
        push_step(tail, step)  # may turn a trailing group into a chord
        return Chain(self._steps.without_last().extended(tail))

    def _with_immutable(self, immutable: bool) -> Chain:
        if not self.tasks:
            return self
        first = self.tasks[0]._with_immutable(immutable)
        return attrs.evolve(self, tasks=(first, *self.tasks[1:]))

    def partial(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Chain:
        if not self.tasks or not (args or kwargs):
            return self
        return attrs.evolve(self, tasks=(self.tasks[0].partial(args, kwargs), *self.tasks[1:]))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.apply_async(args, kwargs)

    def __repr__(self) -> str:
        if not self.tasks:
            return "chain()"
        return " | ".join(f"({t!r})" if isinstance(t, Chain) else repr(t) for t in self.tasks)


def chain(*tasks: Any, **options: Any) -> Chain:
    """Steps in sequence: ``chain(a, b, c)`` is ``a | b | c``.

    Built in one pass (O(n)) with the same rules as ``|``: nested option-less chains
    are flattened and a group followed by a step becomes a chord.
    """
    from flowq.canvas.compose import push_step

    steps: list[Canvas] = []
    for task in canvas_tuple(tasks_arg(tasks)):
        push_step(steps, task)
    return Chain(tuple(steps), options)
