"""The workflow wire format: a compact, versioned, validated JSON encoding of the DAG.

One flat document per workflow (no nesting, so no recursion to encode or decode it)::

    {"v": 1, "seed": "<id of node 0>", "out": 7,
     "names": ["tasks.add", "tasks.tsum"],      # task names, each once
     "kw": [{"x": 1}], "opts": [{"queue": "q"}], # kwargs / options, each distinct one once
     "args": [[1, 2]],                            # argument lists shared by nodes (optional)
     "nodes": [row, ...],                         # topological order
     "ids": {"7": "my-id"},                       # explicit task ids only (optional)
     "scopes": [[lo, hi, [errback nodes]]],       # link_error scopes (optional)
     "crit": []}                                  # extensions a reader must understand

Rows (trailing default fields are dropped):

* task   ``[0, name, args, back, kw, opt, flags]``
* fanout ``[2, name, args, back, kw, opt, flags, items]``
* join   ``[1, [members...], flags]`` or, for members ``start..start+count-1``,
  ``[3, start, count, flags]``

``back`` is how many positions back the input node is (0: no input), so a chain step
is always ``1``; ``name``/``kw``/``opt`` index the tables (-1: none); ``flags`` bit 1 is
immutable, bit 2 deferred, bit 4 (joins) streamed: its members are published by the
producer while sending, so none is listed (readers before it refuse the flag). ``args`` is
the node's argument list, or the index of one in
the ``args`` table: an argument list that several nodes have (a group of one signature
repeated, an errback shared by many parts) is written once. A document using that table
lists ``"args"`` in ``crit``, so a reader that predates it refuses the document instead
of misreading it; documents without it are unchanged. Decoding checks every field and
raises :class:`~flowq.exceptions.MalformedCanvas` naming it; unknown top-level fields
are ignored unless listed in ``crit`` (how a newer writer marks a field as required).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from flowq.canvas.dag import FANOUT, JOIN, TASK, Node, Scope, Workflow
from flowq.canvas.encodable import arguments_error, encode_error, unencodable
from flowq.canvas.frozen import EMPTY, FrozenDict, freeze, thaw
from flowq.exceptions import MalformedCanvas

VERSION = 1
KNOWN_FIELDS = frozenset({"v", "seed", "out", "names", "kw", "opts", "args", "nodes", "ids",
                          "scopes", "crit"})
_IMMUTABLE, _DEFERRED, _STREAMED = 1, 2, 4
_KINDS = {0: TASK, 1: JOIN, 2: FANOUT, 3: JOIN}


# -- encoding --------------------------------------------------------------------------------


class _Table:
    """Interns values: each distinct one is stored once and referred to by position.

    Values are the workflow's own (alive while it is encoded), so one object seen again
    (the args of a signature used a hundred times) is found by identity without being
    serialised again to compute its key.
    """

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.index: dict[Any, int] = {}
        self.seen: dict[int, int] = {}

    def ref(self, value: Any) -> int:
        position = self.seen.get(id(value))
        if position is None:
            key = _key(value)
            position = self.index.get(key)
            if position is None:
                position = self.index[key] = len(self.items)
                self.items.append(value)
            self.seen[id(value)] = position
        return position


def _key(value: Any) -> Any:
    # Interned by encoded form: 1, 1.0 and True are equal in Python but not in JSON, so
    # keying on the value itself would turn {"x": True} into {"x": 1} on the wire.
    return json.dumps(_plain(value), sort_keys=True, default=str)


def encode(workflow: Workflow) -> dict[str, Any]:
    """The workflow as plain JSON types."""
    names, kwargs, options, shared_args = _Table(), _Table(), _Table(), _Table()
    shared = _repeated_args(workflow.nodes)
    rows: list[list[Any]] = []
    explicit: dict[str, str] = {}
    for position, node in enumerate(workflow.nodes):
        flags = (_IMMUTABLE if node.immutable else 0) | (_DEFERRED if node.deferred else 0)
        if node.task_id and position != 0:
            explicit[str(position)] = node.task_id
        if node.kind == JOIN:
            rows.append(_join_row(node.members, flags | (_STREAMED if node.streamed else 0)))
            continue
        kind = 0 if node.kind == TASK else 2
        if node.input is not None or node.deferred or node.kind == FANOUT:
            _check_carried(node)
        args = shared_args.ref(node.args) if position in shared else _plain(node.args)
        row = [kind, names.ref(node.task), args,
               0 if node.input is None else position - node.input,
               kwargs.ref(node.kwargs) if node.kwargs else -1,
               options.ref(node.options) if node.options else -1, flags]
        if node.kind == FANOUT:
            row.append(None if node.items is None else _plain(node.items))
        else:
            _drop_defaults(row)
        rows.append(row)
    doc: dict[str, Any] = {"v": VERSION, "seed": workflow.seed, "out": workflow.output,
                           "names": names.items, "kw": [_plain(k) for k in kwargs.items],
                           "opts": [_plain(o) for o in options.items], "nodes": rows}
    if shared_args.items:
        doc["args"] = [_plain(a) for a in shared_args.items]
        doc["crit"] = ["args"]
    if explicit:
        doc["ids"] = explicit
    if workflow.scopes:
        doc["scopes"] = [[s.lo, s.hi, list(s.errbacks)] for s in workflow.scopes]
    return doc


def _repeated_args(nodes: tuple[Node, ...]) -> set[int]:
    """Positions of the nodes whose argument list another node has too.

    Found by hashing the frozen values, in one pass (no JSON per node); values equal in
    Python but not in JSON (``1`` and ``True``) are told apart by the table's keys.
    """
    first: dict[Any, int] = {}
    shared: set[int] = set()
    for position, node in enumerate(nodes):
        if not node.args:  # [] is the row's default: nothing to share
            continue
        try:
            earlier = first.setdefault(node.args, position)
        except TypeError:  # an unhashable value: written in place
            continue
        if earlier != position:
            shared.update((earlier, position))
    return shared


def _join_row(members: tuple[int, ...], flags: int) -> list[Any]:
    contiguous = members and members[-1] - members[0] == len(members) - 1 and all(
        b - a == 1 for a, b in zip(members, members[1:]))
    row: list[Any] = [3, members[0], len(members)] if contiguous else [1, list(members)]
    if flags:
        row.append(flags)
    return row


_DEFAULTS: tuple[Any, ...] = (None, None, [], 0, -1, -1, 0)


def _drop_defaults(row: list[Any]) -> None:
    while len(row) > 3 and row[-1] == _DEFAULTS[len(row) - 1]:
        row.pop()


_SCALARS = frozenset({str, int, float, bool, type(None)})


def _json_carries(value: Any) -> bool:
    """What JSON carries unchanged: a str, number, bool or None (or a string key)."""
    if isinstance(value, dict):  # a key, tested as {key: None}
        return all(isinstance(key, str) for key in value)
    return value is None or isinstance(value, (str, int, float, bool))


def _check_carried(node: Node) -> None:
    """A node whose message is built from the workflow (a later step, an errback, a
    fanout) gets its arguments from this JSON document: refuse what JSON would change."""
    if node.items is None and all(type(arg) in _SCALARS for arg in node.args) and all(
            type(arg) in _SCALARS for arg in node.kwargs.values()):
        return  # the common case, without the general walk
    if unencodable([node.args, node.kwargs, node.items], _json_carries) is None:
        return
    owner = f"task {node.task!r}" + (f" at {node.path}" if node.path else "")
    note = (" in the workflow's header (the arguments of every step after the first "
            "travel there, as JSON)")
    if node.items is not None and unencodable(node.items, _json_carries) is not None:
        raise encode_error(owner, "the fanout's list", node.items, "json", _json_carries, note)
    received = 0 if node.immutable else 1  # the parent's result, failed task id or item
    raise arguments_error(owner, node.args, node.kwargs, "json", _json_carries, note,
                          first=received)


def _plain(value: Any) -> Any:
    """Frozen values back to JSON types; datetimes become ISO 8601 strings.

    Values JSON has no type for can only be in options (checked when the canvas was
    built) or in the arguments of a workflow's first steps, which travel in their own
    message bodies (what is written here is a copy for graphs and arrival checks): those
    are written as their ``repr``.
    """
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list, frozenset, set)):
        return [_plain(v) for v in value]
    plain = thaw(value)
    return plain if plain is None or isinstance(plain, (str, int, float, bool, dict)) \
        else repr(plain)


def dumps(workflow: Workflow) -> str:
    """The encoding as compact JSON text."""
    return json.dumps(encode(workflow), separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes, max_nodes: int = 1_000_000) -> Workflow:
    """Decode compact JSON text; malformed input raises MalformedCanvas."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise MalformedCanvas(f"workflow: not valid JSON ({exc})") from None
    return decode(data, max_nodes=max_nodes)


# -- decoding ----------------------------------------------------------------------------------


def _fail(field: str, problem: str) -> MalformedCanvas:
    return MalformedCanvas(f"workflow.{field}: {problem}")


def _int(value: Any, field: str, lo: int, hi: int) -> int:
    """An int in ``[lo, hi)``."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(field, f"expected an integer, got {type(value).__name__}")
    if not lo <= value < hi:
        raise _fail(field, f"{value} is out of range {lo}..{hi - 1}")
    return value


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(field, f"expected a list, got {type(value).__name__}")
    return value


def decode(data: Any, max_nodes: int = 1_000_000) -> Workflow:
    """Validate and decode an encoding produced by :func:`encode`."""
    try:
        return _decode(data, max_nodes)
    except RecursionError:  # arguments nested deeper than freezing them allows
        raise MalformedCanvas("workflow: values nested too deeply") from None


def _decode(data: Any, max_nodes: int) -> Workflow:
    if not isinstance(data, dict):
        raise MalformedCanvas(f"workflow: expected an object, got {type(data).__name__}")
    version = data.get("v")
    if type(version) is not int or version != VERSION:  # True == 1, but is no version
        what = "missing" if version is None else f"version {version!r} is not supported"
        raise _fail("v", f"{what} (this flowq reads version {VERSION})")
    for field in _list(data.get("crit", []), "crit"):
        if not isinstance(field, str) or field not in KNOWN_FIELDS:
            raise _fail("crit", f"required field {field!r} is not understood by this flowq")
    seed = data.get("seed")
    if not isinstance(seed, str) or not seed:
        raise _fail("seed", "expected a non-empty string")
    names = _list(data.get("names"), "names")
    if not all(isinstance(n, str) and n for n in names):
        raise _fail("names", "every task name must be a non-empty string")
    kwargs = [_mapping(k, f"kw[{i}]") for i, k in enumerate(_list(data.get("kw", []), "kw"))]
    options = [_mapping(o, f"opts[{i}]") for i, o in enumerate(_list(data.get("opts", []), "opts"))]
    shared_args = [freeze(_list(a, f"args[{i}]"))
                   for i, a in enumerate(_list(data.get("args", []), "args"))]
    rows = _list(data.get("nodes"), "nodes")
    if not rows:
        raise _fail("nodes", "a workflow has at least one node")
    if len(rows) > max_nodes:
        raise _fail("nodes", f"{len(rows)} nodes is over the limit of {max_nodes}")
    explicit = _explicit_ids(data.get("ids", {}), len(rows), seed)
    tables = (names, kwargs, options, shared_args)
    nodes = []
    member_of: set[int] = set()
    for position, row in enumerate(rows):
        node = _node(row, position, tables, explicit.get(position), member_of)
        nodes.append(node)
    output = _int(data.get("out"), "out", 0, len(rows))
    scopes = tuple(_scope(s, i, nodes) for i, s in enumerate(_list(data.get("scopes", []),
                                                                     "scopes")))
    return Workflow(seed, tuple(nodes), output, scopes)


def _mapping(value: Any, field: str) -> FrozenDict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(field, "expected an object with string keys")
    return freeze(value)


def _explicit_ids(value: Any, count: int, seed: str) -> dict[int, str]:
    """Explicit ids by position. Every id must be unique (a second node with one id would
    have its result dropped as a duplicate delivery), the seed included."""
    if not isinstance(value, dict):
        raise _fail("ids", f"expected an object, got {type(value).__name__}")
    out: dict[int, str] = {}
    owner = {seed: "node 0 (the seed)"}
    for key, task_id in value.items():
        field = f"ids[{key!r}]"
        # canonical decimal only: "03" or "٣" would name node 3 a second time
        if not isinstance(key, str) or not key.isdecimal() or str(int(key)) != key:
            raise _fail(field, "keys are node positions")
        position = _int(int(key), field, 0, count)
        if position == 0:
            raise _fail(field, "node 0's id is the seed; it is not listed")
        if not isinstance(task_id, str) or not task_id:
            raise _fail(field, "expected a non-empty string")
        if task_id in owner:
            raise _fail(field, f"task id {task_id!r} is already the id of {owner[task_id]}")
        owner[task_id] = f"node {position}"
        out[position] = task_id
    return out


def _node(row: Any, position: int, tables: tuple[list[Any], ...], task_id: str | None,
          member_of: set[int]) -> Node:
    field = f"nodes[{position}]"
    row = _list(row, field)
    if not row:
        raise _fail(field, "empty row")
    code = row[0]
    if not isinstance(code, int) or isinstance(code, bool) or code not in _KINDS:
        raise _fail(f"{field}[0]", f"unknown node kind {code!r}")
    if _KINDS[code] == JOIN:
        return _join(row, position, task_id, member_of, field)
    names, kwargs, options, shared_args = tables
    if len(row) > (8 if code == 2 else 7):
        raise _fail(field, f"too many fields ({len(row)})")
    padded = list(row) + list(_DEFAULTS[len(row):]) + [None]
    name = names[_int(padded[1], f"{field}[1]", 0, len(names))]
    args = _args(padded[2], f"{field}[2]", shared_args)
    back = _int(padded[3], f"{field}[3]", 0, position + 1)
    kw = _entry(padded[4], f"{field}[4]", kwargs)
    opt = _entry(padded[5], f"{field}[5]", options)
    flags = _int(padded[6], f"{field}[6]", 0, 4)
    items = padded[7] if code == 2 else None
    if items is not None:
        items = freeze(_list(items, f"{field}[7]"))
    return Node(_KINDS[code], name, args, kw, opt, bool(flags & _IMMUTABLE),
                None if back == 0 else position - back, (), task_id, bool(flags & _DEFERRED),
                items)


def _args(value: Any, field: str, shared: list[tuple[Any, ...]]) -> tuple[Any, ...]:
    """A row's own argument list, or the index of a shared one (which all its nodes then
    hold as one frozen value)."""
    if isinstance(value, list):
        return freeze(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(field, f"expected a list or an index into args, got {type(value).__name__}")
    return shared[_int(value, field, 0, len(shared))]


def _entry(value: Any, field: str, table: list[FrozenDict[str, Any]]) -> FrozenDict[str, Any]:
    """A table entry by index; -1 (an int, not -1.0) is none."""
    index = _int(value, field, -1, len(table))
    return EMPTY if index == -1 else table[index]


def _join(row: list[Any], position: int, task_id: str | None, member_of: set[int],
          field: str) -> Node:
    if row[0] == 3:
        if len(row) not in (3, 4):
            raise _fail(field, "a range join is [3, start, count(, flags)]")
        start = _int(row[1], f"{field}[1]", 0, position + 1)
        count = _int(row[2], f"{field}[2]", 0, position - start + 1)
        members = tuple(range(start, start + count))
        flags = row[3] if len(row) == 4 else 0
    else:
        if len(row) not in (2, 3):
            raise _fail(field, "a join is [1, members(, flags)]")
        members = tuple(_int(m, f"{field}[1]", 0, position)
                        for m in _list(row[1], f"{field}[1]"))
        flags = row[2] if len(row) == 3 else 0
    if len(set(members)) != len(members):
        raise _fail(f"{field}[1]", "a join lists the same member twice")
    taken = member_of.intersection(members)
    if taken:
        raise _fail(f"{field}[1]", f"node {min(taken)} is already a member of another join")
    member_of.update(members)
    flags = _int(flags, f"{field}[flags]", 0, 8)
    if flags & _STREAMED and members:
        raise _fail(f"{field}[1]", "a streamed join lists no members")
    return Node(JOIN, members=members, task_id=task_id, deferred=bool(flags & _DEFERRED),
                streamed=bool(flags & _STREAMED))


def _scope(value: Any, position: int, nodes: list[Node]) -> Scope:
    field = f"scopes[{position}]"
    row = _list(value, field)
    if len(row) != 3:
        raise _fail(field, "a scope is [lo, hi, errbacks]")
    lo = _int(row[0], f"{field}[0]", 0, len(nodes) + 1)
    hi = _int(row[1], f"{field}[1]", lo, len(nodes) + 1)
    errbacks = tuple(_int(e, f"{field}[2]", 0, len(nodes)) for e in _list(row[2], f"{field}[2]"))
    for e in errbacks:
        if not nodes[e].deferred:
            raise _fail(f"{field}[2]", f"errback node {e} is not marked deferred")
    return Scope(lo, hi, errbacks)
