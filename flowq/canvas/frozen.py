"""Deeply immutable copies of user values, so a signature really is a value.

Lists become tuples, sets frozensets and dicts :class:`FrozenDict`; :func:`thaw` turns
them back into the types they were given as (a list comes back a list, a tuple a tuple,
a set a set), so no type changes on the way to the serializer: what a serializer does
with each type is its own, documented, business (JSON makes tuples lists and refuses sets).
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

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        from flowq.exceptions import ImmutableSignature

        raise ImmutableSignature(
            "a signature's options and keyword arguments are read-only (flowq signatures are "
            "values); build a new signature instead: sig = sig.set(queue='q') for options, "
            "sig = sig.clone(kwargs={...}) for keyword arguments")

    __setitem__ = __delitem__ = update = pop = popitem = setdefault = clear = _read_only


class FrozenList(tuple):  # type: ignore[type-arg]
    """A frozen list: a tuple that :func:`thaw` turns back into a list (a tuple stays one)."""

    __slots__ = ()


class FrozenSet(frozenset):  # type: ignore[type-arg]
    """A frozen set: a frozenset that :func:`thaw` turns back into a set."""

    __slots__ = ()

    def __repr__(self) -> str:
        return repr(frozenset(self))


EMPTY: FrozenDict[Any, Any] = FrozenDict()


def freeze(value: Any) -> Any:
    """Return an immutable copy of ``value`` (lists -> FrozenList, sets -> FrozenSet,
    dicts -> FrozenDict; tuples and frozensets stay what they are, frozen inside)."""
    if isinstance(value, (str, bytes, int, float, bool, type(None), FrozenDict)):
        return value
    if isinstance(value, Mapping):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return FrozenList(freeze(v) for v in value)
    if isinstance(value, tuple):
        return type(value)(freeze(v) for v in value) if type(value) in (tuple, FrozenList) \
            else value  # a named tuple (or other tuple type) is the caller's own value
    if isinstance(value, set):
        return FrozenSet(freeze(v) for v in value)
    if isinstance(value, frozenset):
        return type(value)(freeze(v) for v in value) if type(value) in (frozenset, FrozenSet) \
            else value
    return value


def thaw(value: Any) -> Any:
    """Return a plain copy of ``value`` with the types it was given as: lists, tuples,
    sets and dicts (a canvas becomes its dict, see :mod:`flowq.canvas.dicts`)."""
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, FrozenList):
        return [thaw(v) for v in value]
    if type(value) is tuple:
        return tuple(thaw(v) for v in value)
    if isinstance(value, (FrozenSet, set)):
        return {thaw(v) for v in value}
    if type(value) is frozenset:
        return frozenset(thaw(v) for v in value)
    from flowq.canvas.signature import Canvas  # (imports this module)

    if isinstance(value, Canvas):
        from flowq.canvas.dicts import to_dict

        return to_dict(value)
    return value
