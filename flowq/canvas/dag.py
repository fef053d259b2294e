"""The workflow DAG: every canvas compiles to one immutable graph of task invocations.

Nodes are stored in topological order (a node's inputs always come before it), which
is what makes the graph acyclic by construction and lets every pass over it be a loop
instead of a recursion. Three kinds of node:

* ``task``: runs a task. Its ``input`` (if any) is the node whose result it receives
  as first argument (unless ``immutable``; then it only waits for it).
* ``join``: a group's result: the list of its ``members``' results in order. Joins are
  where chords count their parts; a chord body is a node whose input is a join.
* ``fanout``: runs its task once per item of its input's result (a list) and is then
  the list of their results, like a join whose width is decided at run time.

The nodes of any sub-canvas occupy a contiguous range of positions, so an errback
scope (``link_error`` on a chain, group or chord) is just ``[lo, hi)``. Success
callbacks (``link``) and errbacks are compiled after the main graph; errback entries
are ``deferred``: started by a failure, never at send time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from flowq.canvas import ids
from flowq.canvas.chain import Chain
from flowq.canvas.chord import Chord
from flowq.canvas.fanout import Fanout
from flowq.canvas.frozen import EMPTY, FrozenDict
from flowq.canvas.group import Group
from flowq.canvas.options import ENTRY, NOT_PROPAGATED, stamp_names
from flowq.canvas.signature import Canvas, Signature, freeze_options
from flowq.canvas.stream import Stream
from flowq.exceptions import InvalidWorkflow

TASK, JOIN, FANOUT = "task", "join", "fanout"

#: Deepest nesting of canvases compile accepts (the DAG itself is flat).
MAX_NESTING = 200


@attrs.frozen(slots=True)
class Node:
    """One task invocation (or join) in a workflow."""

    kind: str
    task: str | None = None
    args: tuple[Any, ...] = ()
    kwargs: FrozenDict[str, Any] = EMPTY
    options: FrozenDict[str, Any] = EMPTY
    immutable: bool = False
    input: int | None = None
    members: tuple[int, ...] = ()
    task_id: str | None = None
    deferred: bool = False
    items: tuple[Any, ...] | None = None
    path: str = attrs.field(default="", eq=False)
    #: a join whose members the producer streams in while sending (no ``members``)
    streamed: bool = False

    @property
    def is_entry(self) -> bool:
        """Started when the workflow is sent (or, if deferred, when its scope fails)."""
        return self.input is None and (self.kind != JOIN or not self.members)


@attrs.frozen(slots=True)
class Scope:
    """``link_error`` of a sub-canvas: nodes ``[lo, hi)`` start ``errbacks`` on failure."""

    lo: int
    hi: int
    errbacks: tuple[int, ...]


@attrs.frozen(slots=True)
class Membership:
    join: int
    index: int


@attrs.define(slots=True)
class _Topology:
    """Indexes derived once from the nodes: who consumes what, who belongs where."""

    consumers: list[tuple[int, ...]]
    memberships: list[tuple[Membership, ...]]


@attrs.frozen(slots=True)
class StreamPlan:
    """How the producer publishes a streamed join's members: the stream, and the options
    its members inherit (merged as compile merges a header member's)."""

    join: int
    stream: Stream
    path: str
    inherited: FrozenDict[str, Any]
    entry: FrozenDict[str, Any]
    call: FrozenDict[str, Any]

    def batches(self, size: int) -> Iterator[list[Node]]:
        """The members' task nodes, ``size`` at a time, taken from the generator only as
        each batch is asked for."""
        batch: list[Node] = []
        for index, member in enumerate(self.stream.members(self.path)):
            path = f"{self.path}[{index}]"
            if not isinstance(member, Signature):
                raise InvalidWorkflow([(path, "a chord header streamed from a generator "
                                              "takes task signatures; give a list to use a "
                                              "chain, group or chord as a member")])
            batch.append(task_node(member, path, self.inherited, self.entry, self.call))
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch


@attrs.frozen(slots=True)
class Workflow:
    """A compiled workflow: nodes in topological order, the output node and scopes.

    ``seed`` is the id of node 0; every other node's id is derived from it and the
    node's position unless the node carries an explicit ``task_id``.
    """

    seed: str
    nodes: tuple[Node, ...]
    output: int
    scopes: tuple[Scope, ...] = ()
    #: the producer's plans for streamed joins (never encoded: only the sender has them)
    streams: tuple[StreamPlan, ...] = attrs.field(default=(), eq=False, repr=False)
    _topo: _Topology | None = attrs.field(init=False, default=None, eq=False, repr=False)
    _ids: list[str] | None = attrs.field(init=False, default=None, eq=False, repr=False)
    _errback_nodes: frozenset[int] | None = attrs.field(init=False, default=None, eq=False,
                                                       repr=False)

    def __len__(self) -> int:
        return len(self.nodes)

    # -- ids ----------------------------------------------------------------------------

    def node_id(self, index: int) -> str:
        return self.ids()[index]

    def ids(self) -> list[str]:
        """Every node's task id, derived once (explicit ids win)."""
        if self._ids is None:
            object.__setattr__(self, "_ids", [node.task_id or ids.derive(self.seed, i)
                                              for i, node in enumerate(self.nodes)])
        return self._ids  # type: ignore[return-value]

    @property
    def output_id(self) -> str:
        return self.node_id(self.output)

    # -- structure ------------------------------------------------------------------------

    @property
    def topology(self) -> _Topology:
        if self._topo is None:  # derived once, on first use
            object.__setattr__(self, "_topo", _build_topology(self.nodes))
        return self._topo  # type: ignore[return-value]

    def consumers(self, index: int) -> tuple[int, ...]:
        """Task and fanout nodes that take ``index``'s result as input."""
        return self.topology.consumers[index]

    def memberships(self, index: int) -> tuple[Membership, ...]:
        """The joins ``index`` is a member of, with its position in each."""
        return self.topology.memberships[index]

    def entries(self) -> list[int]:
        """Nodes started when the workflow is sent."""
        return [i for i, node in enumerate(self.nodes) if node.is_entry and not node.deferred]

    def joins(self) -> list[int]:
        return [i for i, node in enumerate(self.nodes) if node.kind == JOIN]

    def downstream(self, index: int) -> list[int]:
        """Every node that (transitively) waits for ``index``, in topological order."""
        seen: set[int] = set()
        queue = deque([index])
        while queue:
            current = queue.popleft()
            nexts = list(self.consumers(current)) + [m.join for m in self.memberships(current)]
            for nxt in nexts:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return sorted(seen)

    def errback_nodes(self) -> frozenset[int]:
        """Nodes that run only if an errback scope fires: its errbacks and what waits on
        them (an errback chain's later steps are not deferred themselves); derived once,
        in one pass over all of them."""
        if self._errback_nodes is None:
            found = {e for scope in self.scopes for e in scope.errbacks}
            queue = deque(found)
            while queue:
                current = queue.popleft()
                for nxt in (*self.consumers(current),
                            *(m.join for m in self.memberships(current))):
                    if nxt not in found:
                        found.add(nxt)
                        queue.append(nxt)
            object.__setattr__(self, "_errback_nodes", frozenset(found))
        return self._errback_nodes  # type: ignore[return-value]

    def scopes_of(self, index: int) -> list[Scope]:
        """The errback scopes covering ``index``, innermost first."""
        found = [s for s in self.scopes if s.lo <= index < s.hi]
        return sorted(found, key=lambda s: s.hi - s.lo)

    def parent(self, index: int) -> int | None:
        """The node whose result flows into ``index`` (None for entries and joins)."""
        return self.nodes[index].input


def _build_topology(nodes: tuple[Node, ...]) -> _Topology:
    consumers: list[list[int]] = [[] for _ in nodes]
    memberships: list[list[Membership]] = [[] for _ in nodes]
    for i, node in enumerate(nodes):
        if node.input is not None:
            consumers[node.input].append(i)
        for position, member in enumerate(node.members):
            memberships[member].append(Membership(i, position))
    return _Topology([tuple(c) for c in consumers], [tuple(m) for m in memberships])


# -- compiling a canvas ------------------------------------------------------------------------


def compile_workflow(canvas: Canvas, args: Iterable[Any] | None = None,
                     kwargs: Mapping[str, Any] | None = None,
                     options: Mapping[str, Any] | None = None,
                     seed: str | None = None, errbacks_on_chord_header: bool = False) -> Workflow:
    """Compile ``canvas`` (with call-time partial arguments and options) to a :class:`Workflow`.

    Raises :class:`InvalidWorkflow` for shapes that cannot run (a chord without a body,
    nesting deeper than :data:`MAX_NESTING`). Arity and option checks are
    :mod:`flowq.canvas.validate`'s job. ``errbacks_on_chord_header`` (Celery's
    ``task_allow_error_cb_on_chord_header``): a chord's own errbacks also get a scope of
    their own on each header member, started immutable, as Celery links them to each
    header task.
    """
    if args or kwargs:
        canvas = canvas.partial(tuple(args or ()), dict(kwargs or {}))
    call = dict(freeze_options(options))
    builder = _Builder(errbacks_on_chord_header)
    output = builder.add(canvas, None, _root_path(canvas), EMPTY, EMPTY, call, 0, deferred=False)
    for name in ("link", "link_error"):
        for extra in call.get(name, ()):
            builder.attach(name, extra, output, 0, builder.count(), _root_path(canvas))
    builder.drain()
    nodes = builder.freeze()
    first = nodes[0].task_id
    if first:  # node 0's id is the seed itself, so it is not stored twice
        nodes = (attrs.evolve(nodes[0], task_id=None), *nodes[1:])
    return Workflow(first or seed or ids.new_id(), nodes, output, tuple(builder.scopes),
                    tuple(builder.streams))


def task_node(sig: Signature, path: str, inherited: Mapping[str, Any] = EMPTY,
              entry: Mapping[str, Any] = EMPTY, call: Mapping[str, Any] | None = None) -> Node:
    """The node a lone signature compiles to where nothing feeds it (a part added to a
    chord, or streamed into its header): options merged as :func:`compile_workflow`
    merges them. It has no scope of its own, so ``link``/``link_error`` are refused."""
    if sig.options.get("link") or sig.options.get("link_error"):
        raise InvalidWorkflow([(path, "a part added to a chord (or streamed into its header) "
                                      "cannot have a link or link_error of its own; give "
                                      "them to the chord")])
    builder = _Builder()
    builder._task(sig, None, path, FrozenDict(inherited), FrozenDict(entry), call or {}, False)
    return Node(**builder.nodes[0])


def _root_path(canvas: Canvas) -> str:
    return "task" if isinstance(canvas, Signature) else type(canvas).__name__.lower()


class _Builder:
    """Appends nodes in topological order while walking the canvas (depth first)."""

    def __init__(self, errbacks_on_chord_header: bool = False) -> None:
        self.errbacks_on_chord_header = errbacks_on_chord_header
        self.streams: list[StreamPlan] = []
        self.nodes: list[dict[str, Any]] = []
        self.scopes: list[Scope] = []
        self.pending: deque[tuple[str, Canvas, int, int, int, str]] = deque()

    def count(self) -> int:
        return len(self.nodes)

    def freeze(self) -> tuple[Node, ...]:
        return tuple(Node(**fields) for fields in self.nodes)

    def add(self, canvas: Canvas, input: int | None, path: str,
            inherited: FrozenDict[str, Any], entry: FrozenDict[str, Any],
            call: Mapping[str, Any], depth: int, deferred: bool) -> int:
        """Add ``canvas`` fed by ``input``; return the node holding its result.

        ``inherited`` are option defaults from enclosing canvases; ``entry`` the
        entry-only options (countdown, eta, expires) for this canvas's first steps;
        ``call`` the call-time options, which win over everything.
        """
        if depth > MAX_NESTING:
            raise InvalidWorkflow([(path, f"canvas nested deeper than {MAX_NESTING} levels")])
        lo = len(self.nodes)
        own = canvas.options
        if isinstance(canvas, Signature):
            out = self._task(canvas, input, path, inherited, entry, call, deferred)
        else:
            out = self._composite(canvas, input, path, inherited, entry, call, depth, deferred)
        task_id = call.get("task_id") if depth == 0 else None
        if task_id or (own.get("task_id") and not isinstance(canvas, Signature)):
            self.nodes[out]["task_id"] = task_id or own["task_id"]
        self._attach_own(own, out, lo, path)
        return out

    def _attach_own(self, own: FrozenDict[str, Any], out: int, lo: int, path: str) -> None:
        """Queue a part's own links (fed by ``out``) and errbacks (scope: its nodes, from
        ``lo`` to the last one added)."""
        for name in ("link", "link_error"):
            for extra in own.get(name, ()):
                self.attach(name, extra, out, lo, len(self.nodes), path)

    def attach(self, name: str, extra: Canvas, out: int, lo: int, hi: int, path: str) -> None:
        """Queue a link (fed by ``out``) or an errback (scope ``[lo, hi)``) for later."""
        self.pending.append((name, extra, out, lo, hi, path))

    def drain(self) -> None:
        """Compile queued links and errbacks after the main graph (and theirs after them)."""
        counters: dict[tuple[str, str], int] = {}
        while self.pending:
            name, extra, out, lo, hi, path = self.pending.popleft()
            k = counters.get((path, name), 0)
            counters[(path, name)] = k + 1
            sub = f"{path}.{name}[{k}]"
            if name == "link":
                self.add(extra, out, sub, EMPTY, EMPTY, {}, 1, deferred=False)
                continue
            start = len(self.nodes)
            self.add(extra, None, sub, EMPTY, EMPTY, {}, 1, deferred=True)
            entries = tuple(i for i in range(start, len(self.nodes))
                            if Node(**self.nodes[i]).is_entry)
            for i in entries:
                self.nodes[i]["deferred"] = True
            self.scopes.append(Scope(lo, hi, entries))

    def _task(self, sig: Signature, input: int | None, path: str,
              inherited: FrozenDict[str, Any], entry: FrozenDict[str, Any],
              call: Mapping[str, Any], deferred: bool) -> int:
        options = dict(inherited)
        if not deferred:  # entry options reach a composite's first steps (input or not)
            options.update(entry)
        options.update((k, v) for k, v in sig.options.items() if k not in ("link", "link_error"))
        options.update((k, v) for k, v in call.items()
                       if k not in NOT_PROPAGATED or (k in ENTRY and input is None))
        if "stamped_headers" in options:
            _keep_stamps(options, inherited, sig.options, call)
        task_id = options.pop("task_id", None)
        self.nodes.append({"kind": TASK, "task": sig.task, "args": sig.args,
                           "kwargs": sig.kwargs, "options": FrozenDict(options),
                           "immutable": sig.immutable, "input": input, "task_id": task_id,
                           "path": path})
        return len(self.nodes) - 1

    def _composite(self, canvas: Canvas, input: int | None, path: str,
                   inherited: FrozenDict[str, Any], entry: FrozenDict[str, Any],
                   call: Mapping[str, Any], depth: int, deferred: bool) -> int:
        prefix = path if depth == 0 else f"{path}.{type(canvas).__name__.lower()}"
        sub_call = {k: v for k, v in call.items() if k != "task_id"}
        if not isinstance(canvas, Group):  # a group merges its own (also as a chord header)
            inherited, entry = _scoped(canvas.options, inherited, entry)
        if isinstance(canvas, Chain):
            return self._chain(canvas, input, prefix, inherited, entry, sub_call, depth, deferred)
        if isinstance(canvas, Group):
            return self._group(canvas, input, prefix, inherited, entry, sub_call, depth, deferred,
                               path)
        if isinstance(canvas, Chord):
            if canvas.body is None:
                raise InvalidWorkflow([(path, "chord has no body; give one with "
                                              "chord(header, body) or chord(header)(body)")])
            lo = len(self.nodes)
            members: list[tuple[int, int, int]] = []
            if isinstance(canvas.header, Stream):
                join = self._streamed(canvas.header, input, f"{prefix}.header", inherited,
                                      entry, sub_call, depth, deferred, path, members)
            else:
                join = self._group(canvas.header, input, f"{prefix}.header", inherited, entry,
                                   sub_call, depth + 1, deferred, path, members)
            # a header keeps its own links and errbacks (``group.on_error(e) | body``)
            self._attach_own(canvas.header.options, join, lo, f"{prefix}.header")
            if self.errbacks_on_chord_header:
                for errback in canvas.options.get("link_error", ()):
                    for index, (start, out, end) in enumerate(members):
                        self.attach("link_error", errback._with_immutable(True), out, start,
                                    end, f"{prefix}.header[{index}]")
            body_call = {k: v for k, v in sub_call.items() if k not in ENTRY}
            return self.add(canvas.body, join, f"{prefix}.body", inherited, EMPTY, body_call,
                            depth + 1, deferred)
        if isinstance(canvas, Fanout):
            return self._fanout(canvas, input, prefix, inherited, entry, sub_call, deferred)
        raise InvalidWorkflow([(path, f"not a workflow shape: {canvas!r}")])

    def _chain(self, chain: Chain, input: int | None, prefix: str,
               inherited: FrozenDict[str, Any], entry: FrozenDict[str, Any],
               call: Mapping[str, Any], depth: int, deferred: bool) -> int:
        if not chain.tasks:
            raise InvalidWorkflow([(prefix, "chain has no steps")])
        later_call = {k: v for k, v in call.items() if k not in ENTRY}
        out = input
        for position, step in enumerate(chain.tasks):
            first = position == 0
            out = self.add(step, out, f"{prefix}[{position}]", inherited,
                           entry if first else EMPTY, call if first else later_call,
                           depth + 1, deferred)
        assert out is not None
        return out

    def _group(self, group: Group, input: int | None, prefix: str,
               inherited: FrozenDict[str, Any], entry: FrozenDict[str, Any],
               call: Mapping[str, Any], depth: int, deferred: bool, path: str,
               ranges: list[tuple[int, int, int]] | None = None) -> int:
        """Add the members and their join; ``ranges`` collects each member's
        ``(first node, output node, end)``."""
        shared, entry = _scoped(group.options, inherited, entry)
        outputs = []
        for i, member in enumerate(group.tasks):
            start = len(self.nodes)
            outputs.append(self.add(member, input, f"{prefix}[{i}]", shared, entry, call,
                                    depth + 1, deferred))
            if ranges is not None:
                ranges.append((start, outputs[-1], len(self.nodes)))
        members = tuple(outputs)
        self.nodes.append({"kind": JOIN, "members": members, "path": path,
                           "task_id": group.options.get("task_id")})
        return len(self.nodes) - 1

    def _streamed(self, stream: Stream, input: int | None, prefix: str,
                  inherited: FrozenDict[str, Any], entry: FrozenDict[str, Any],
                  call: Mapping[str, Any], depth: int, deferred: bool, path: str,
                  ranges: list[tuple[int, int, int]]) -> int:
        """A header from a generator: a streamed join the producer fills while sending;
        where a worker would publish the header (after a parent, in an errback), the
        generator is taken as a list now (once: the list is kept for later compiles)."""
        if input is not None or deferred:
            return self._group(stream.as_group(prefix), input, prefix, inherited, entry, call,
                               depth + 1, deferred, path, ranges)
        shared, own_entry = _scoped(stream.options, inherited, entry)
        self.nodes.append({"kind": JOIN, "members": (), "path": path, "streamed": True,
                           "task_id": stream.options.get("task_id")})
        join = len(self.nodes) - 1
        self.streams.append(StreamPlan(join, stream, prefix, shared, own_entry,
                                       FrozenDict(call)))
        return join

    def _fanout(self, fan: Fanout, input: int | None, prefix: str,
                inherited: FrozenDict[str, Any], entry: FrozenDict[str, Any],
                call: Mapping[str, Any], deferred: bool) -> int:
        template = fan.task
        options = dict(inherited)
        options.update(entry)
        options.update((k, v) for k, v in template.options.items() if k not in NOT_PROPAGATED)
        options.update((k, v) for k, v in call.items()
                       if k not in NOT_PROPAGATED or (k in ENTRY and input is None))
        if "stamped_headers" in options:
            _keep_stamps(options, inherited, template.options, call)
        if input is None and fan.items is None and not deferred:
            raise InvalidWorkflow([(prefix, "fanout at the start of a workflow needs its list: "
                                            "pass it as the first argument")])
        self.nodes.append({"kind": FANOUT, "task": template.task, "args": template.args,
                           "kwargs": template.kwargs, "options": FrozenDict(options),
                           "immutable": template.immutable, "input": input,
                           "items": fan.items, "path": prefix})
        return len(self.nodes) - 1


def _keep_stamps(options: dict[str, Any], *layers: Mapping[str, Any]) -> None:
    """Stamps from every layer survive the merge (a call's ``stamped_headers`` would
    otherwise replace the signature's own list)."""
    options["stamped_headers"] = stamp_names(*layers)


def _scoped(own: FrozenDict[str, Any], inherited: FrozenDict[str, Any],
            entry: FrozenDict[str, Any]) -> tuple[FrozenDict[str, Any], FrozenDict[str, Any]]:
    """Defaults for the inside of a composite: its own options over the enclosing ones."""
    if not own:
        return inherited, entry
    return (inherited.merged({k: v for k, v in own.items() if k not in NOT_PROPAGATED}),
            entry.merged({k: v for k, v in own.items() if k in ENTRY}))
