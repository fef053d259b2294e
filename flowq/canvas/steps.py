"""The steps of a chain: an immutable sequence that ``|`` extends without copying.

``a | b | c | ...`` builds one new chain per ``|``. Copying the steps each time would
make a chain of n steps cost O(n²) to build; instead each :class:`Steps` shares the
steps it extends (a linked list of small chunks) and is flattened to one tuple, in a
loop (never a recursion), the first time it is read. Building is then O(1) per step
and reading O(n) once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flowq.canvas.signature import Canvas


class Steps:
    """An immutable, hashable sequence of canvases, equal by value to any other with the
    same steps (however it was built)."""

    __slots__ = ("_link", "_len")
    # (steps before these or None, the steps added here). Swapped in one assignment when
    # flattened, so a concurrent reader sees either the old link or the flat tuple.
    _link: tuple[Steps | None, tuple[Canvas, ...]]
    _len: int

    def __init__(self, added: Iterable[Canvas] = (), before: Steps | None = None):
        items = tuple(added)
        if not before:
            before = None
        assert before is None or items, "a link always adds steps (see extended)"
        self._link = (before, items)
        self._len = len(items) + (len(before) if before is not None else 0)

    def __len__(self) -> int:
        return self._len

    @property
    def last(self) -> Canvas | None:
        """The last step, in O(1) (None when empty)."""
        added = self._link[1]
        return added[-1] if added else None  # only the empty sequence adds nothing

    def without_last(self) -> Steps:
        """These steps but the last, sharing the ones before it."""
        before, added = self._link
        if len(added) == 1 and before is not None:
            return before
        return Steps(added[:-1], before) if added else self

    def extended(self, more: Iterable[Canvas]) -> Steps:
        """These steps followed by ``more``, in O(len(more)): nothing is copied."""
        items = tuple(more)
        return Steps(items, self) if items else self

    def as_tuple(self) -> tuple[Canvas, ...]:
        """Every step in order; built once, iteratively, then kept."""
        before, added = self._link
        if before is None:
            return added
        chunks = [added]
        while before is not None:
            before, chunk = before._link
            chunks.append(chunk)
        flat = tuple(itertools.chain.from_iterable(reversed(chunks)))
        self._link = (None, flat)  # the shared chunks are no longer needed by this one
        return flat

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Steps):
            return NotImplemented
        return self._len == other._len and self.as_tuple() == other.as_tuple()

    def __hash__(self) -> int:
        return hash(self.as_tuple())

    def __reduce__(self) -> tuple[Any, ...]:
        return (Steps, (self.as_tuple(),))

    def __repr__(self) -> str:
        return f"Steps({self.as_tuple()!r})"
