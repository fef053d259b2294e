"""Finding the value a serializer cannot carry, and saying so precisely.

Arguments and results are handed to a serializer whole; when it refuses, its error names
a type but not where the value sits (``Object of type set is not JSON serializable``).
:func:`unencodable` walks the value (only then: the happy path pays nothing) and
:func:`encode_error` builds one :class:`~flowq.exceptions.EncodeError` that names the task,
the place (``argument 1['items'][3]``, ``the return value``), the type and what to do. The
same two functions serve task arguments, results and the workflow header, whatever the
serializer: each caller says what its serializer carries with a ``carries`` predicate.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Mapping
from typing import Any

from flowq.exceptions import EncodeError

#: Whether a serializer carries one value (tested alone, on a leaf or a set).
Carries = Callable[[Any], bool]


def unencodable(value: Any, carries: Carries) -> tuple[str, Any, bool] | None:
    """Where the first piece of ``value`` that ``carries`` refuses sits: its path
    (``"['a'][1]"``, ``""`` for the value itself), the piece, and whether it is a mapping's
    key; None when every piece is carried. Lists, tuples and mappings are walked (keys
    too), in a loop, so deep values are no RecursionError; anything else, sets included,
    is tested as one piece."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, Mapping):
            for key in item:
                if not carries({key: None}):
                    return path, key, True
            stack.extend((f"{path}[{key!r}]", item[key]) for key in reversed(list(item)))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{path}[{i}]", part) for i, part in reversed(list(enumerate(item))))
        elif not carries(item):
            return path, item, False
    return None


def encode_error(owner: str, place: str, value: Any, serializer: str, carries: Carries,
                 note: str = "") -> EncodeError:
    """The error for ``value`` (found at ``place`` of ``owner``) that ``serializer`` does
    not carry: where the offending piece is, its type, and what to do instead."""
    found = unencodable(value, carries)
    path, piece, key = found if found is not None else ("", value, False)
    if key:
        return EncodeError(f"{owner}: {place}{path} has the key {piece!r} ({_a(piece)}), which "
                           f"the {serializer} serializer cannot carry as it is{note}; use "
                           f"string keys")
    return EncodeError(f"{owner}: {place}{path} is {_a(piece)}, which the {serializer} "
                       f"serializer cannot carry{note}; {_advice(piece)}")


def arguments_error(owner: str, args: Any, kwargs: Mapping[str, Any], serializer: str,
                    carries: Carries, note: str = "", first: int = 0) -> EncodeError:
    """:func:`encode_error` for a call's arguments: names the first positional argument
    (``argument 2``, counting from ``first``) or keyword argument (``keyword argument
    'when'``) not carried."""
    places = [(f"argument {first + i}", arg) for i, arg in enumerate(args)]
    places += [(f"keyword argument {key!r}", arg) for key, arg in kwargs.items()]
    for place, arg in places:
        if unencodable(arg, carries) is not None:
            return encode_error(owner, place, arg, serializer, carries, note)
    return encode_error(owner, "the arguments", [args, kwargs], serializer, carries, note)


#: What the frozen copies in a signature stand for, for messages (see flowq.canvas.frozen).
_SHOWN_AS = {"FrozenList": "list", "FrozenSet": "set", "FrozenDict": "dict"}


def _a(value: Any) -> str:
    name = type(value).__name__
    name = _SHOWN_AS.get(name, name)
    return f"an {name}" if name[:1].lower() in "aeiou" else f"a {name}"


def _advice(value: Any) -> str:
    from flowq.canvas.signature import Canvas  # (imports flowq.exceptions, as this does)

    if isinstance(value, Canvas):
        return ("a task that returns a workflow does not run it: call self.replace(workflow) "
                "to run it in the task's place, or pass dict(workflow) to carry it as data")
    if type(value).__name__ in ("AsyncResult", "GroupResult", "ResultSet"):
        return "pass its id (result.id) and rebuild it with app.AsyncResult(id)"
    if isinstance(value, (datetime.date, datetime.time)):
        return "pass value.isoformat() and parse it in the task"
    if isinstance(value, (set, frozenset)):
        return "pass a list (sorted(value)) instead"
    return ("convert it to types the serializer carries (docs/runtime.md, \"Serializers\", "
            "lists them for each serializer)")
