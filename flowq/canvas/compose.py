"""The ``|`` operator: how two canvases combine, following Celery's rules.

* ``a | b`` is a chain; chains without options of their own are flattened.
* ``group | x`` is a chord with ``x`` as its body, and so is a chain ending in a group
  followed by a step (``chain(a, group) | b`` is ``chain(a, chord(group, b))``).

Nothing else is rewritten: a group of one stays a group, chords are never merged.
"""

from __future__ import annotations

from typing import TypeGuard

from flowq.canvas.chain import Chain
from flowq.canvas.chord import Chord
from flowq.canvas.group import Group
from flowq.canvas.signature import Canvas


def pipe(left: Canvas, right: Canvas) -> Canvas:
    """``left | right``; O(1) for a chain on the left (its steps are shared, not copied)."""
    if isinstance(left, Group):
        return Chord(left, right)
    start = left if _flat(left) else Chain((left,))
    return start.then(right)


def push_step(steps: list[Canvas], step: Canvas) -> None:
    """Append ``step`` to a chain under construction, in place."""
    if _flat(step):
        for inner in step.tasks:
            push_step(steps, inner)
    elif steps and isinstance(steps[-1], Group):
        steps[-1] = Chord(steps[-1], step)
    else:
        steps.append(step)


def _flat(canvas: Canvas) -> TypeGuard[Chain]:
    return isinstance(canvas, Chain) and not canvas.options
