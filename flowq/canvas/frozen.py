"""Deeply immutable copies of user values, so a signature really is a value.

Lists become tuples and dicts become :class:`FrozenDict`; :func:`thaw` turns them back
into what a task receives over JSON (lists and dicts), which is also what eager runs pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(Mapping[K, V]):
    """A read-only, hashable mapping."""

    __slots__ = ("_data", "_hash")
    _data: dict[Any, Any]
    _hash: int | None

    def __init__(self, data: Mapping[K, V] | None = None, **more: V):
        merged: dict[Any, Any] = dict(data or {})
        merged.update(more)
        object.__setattr__(self, "_data", merged)
        object.__setattr__(self, "_hash", None)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:  # computed once, on first use
            object.__setattr__(self, "_hash", hash(frozenset(self._data.items())))
        assert self._hash is not None
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._data == other._data
        return isinstance(other, Mapping) and self._data == dict(other)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenDict is immutable")

    def __repr__(self) -> str:
        return repr(self._data)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenDict, (self._data,))

    def merged(self, other: Mapping[K, V] | None = None, **more: V) -> FrozenDict[K, V]:
        """A new mapping: this one updated by ``other`` and ``more``."""
        data = dict(self._data)
        data.update(other or {})
        data.update(more)
        return FrozenDict(data)

    def without(self, *keys: K) -> FrozenDict[K, V]:
        return FrozenDict({k: v for k, v in self._data.items() if k not in keys})


EMPTY: FrozenDict[Any, Any] = FrozenDict()


def freeze(value: Any) -> Any:
    """Return an immutable copy of ``value`` (lists/sets -> tuples, dicts -> FrozenDict)."""
    if isinstance(value, (str, bytes, int, float, bool, type(None), FrozenDict)):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Return a plain copy of ``value`` shaped as JSON would deliver it (lists, dicts;
    a canvas becomes its dict, see :mod:`flowq.canvas.dicts`)."""
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [thaw(v) for v in value]
    from flowq.canvas.signature import Canvas  # (imports this module)

    if isinstance(value, Canvas):
        from flowq.canvas.dicts import to_dict

        return to_dict(value)
    return value
