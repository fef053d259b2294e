"""Text, Graphviz DOT and Mermaid views of a compiled workflow graph.

An operator needs to *see* a workflow: before sending it, while it runs (with each
node's state) and after it failed. :func:`render` turns the ``networkx.DiGraph`` from
``sig.graph()`` into one of three text formats, which can be printed, logged, or piped
into ``dot -Tsvg`` or a Mermaid viewer, or into an SVG picture drawn without Graphviz
(:mod:`flowq.canvas.render_svg`). Nothing here does I/O.

The three text renderers and the pictures share one description of a node
(:class:`NodeView`: label, state, short id, result) and of an edge
(:data:`_EDGE_NOTES`), and differ only in syntax.
Every renderer is one loop over the nodes in topological order, with no recursion, so a
chain of 100,000 steps renders in linear time without touching the recursion limit.

Example::

    >>> print(render(chord_graph))
    workflow (5 nodes, output: #4)
    #0 tasks.add(2, 2)
    #1 tasks.mul(..., 10)  <- #0
    #2 tasks.mul(..., 20)  <- #0
    #3 join[2]  <- #1, #2
    #4 tasks.tsum(...)  <- #3   [output]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import networkx as nx

from flowq import states

#: Marks the parent's result going in as the first argument.
RESULT_ARG = "..."
#: Ends an argument list or result cut at ``max_args`` characters.
ELLIPSIS = "…"
#: How many characters of a task id (and the root id) are shown.
ID_CHARS = 8
#: A run of at least this many consecutive predecessors is shown as ``#a..#b``.
MIN_RUN = 3

#: Fill colour per state, shared by DOT and Mermaid. Unknown states are not coloured.
STATE_COLOURS: Mapping[str, str] = MappingProxyType(
    {
        states.SUCCESS: "#a5d6a7",  # green
        states.FAILURE: "#ef9a9a",  # red
        states.STARTED: "#fff59d",  # yellow
        states.RECEIVED: "#fff59d",  # yellow
        states.PENDING: "#f5f5f5",  # white-grey
        states.REVOKED: "#bdbdbd",  # grey
        states.RETRY: "#ffcc80",  # orange
    }
)

#: What an edge's ``flow`` means when the reader cannot tell from the target's label.
#: "result" shows as ``...`` in the target's arguments and "member" as ``join[n]``, so
#: neither needs a note.
_EDGE_NOTES: Mapping[str, str] = {"after": "after", "errback": "on failure"}


# -- the shared description of nodes --------------------------------------------------


@attrs.frozen(slots=True)
class NodeView:
    """What every format shows about one node, already truncated."""

    key: Any
    kind: str
    label: str
    state: str | None
    short_id: str | None
    result: str | None
    deferred: bool
    output: bool

    @property
    def details(self) -> list[str]:
        """``[STATE]``, ``id=1a2b3c4d``, ``-> result``: whichever are known."""
        details = [f"[{self.state}]"] if self.state is not None else []
        details += [f"id={self.short_id}"] if self.short_id is not None else []
        details += [f"-> {self.result}"] if self.result is not None else []
        return details

    @property
    def marks(self) -> list[str]:
        """``errback`` and ``output``: the roles a node plays in the workflow."""
        return [mark for mark, has in (("errback", self.deferred), ("output", self.output)) if has]

    @property
    def lines(self) -> list[str]:
        """The label, then the details on a second line when there are any."""
        details = self.details
        return [self.label, " ".join(details)] if details else [self.label]


def clip(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters, ending with an ellipsis if cut."""
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)] + ELLIPSIS


def _short_id(value: object) -> str | None:
    # Whitespace folded so that a malformed id cannot break a DOT or Mermaid comment line.
    return None if value is None else " ".join(str(value)[:ID_CHARS].split())


def _call(data: Mapping[str, Any], takes_result: bool, max_args: int) -> str:
    """``task(args, k=v)`` with ``...`` first when the parent's result is passed in."""
    task = data.get("task")
    if task is None:
        return ""
    parts = [RESULT_ARG] if takes_result else []
    parts += [repr(arg) for arg in data.get("args") or ()]
    parts += [f"{name}={value!r}" for name, value in (data.get("kwargs") or {}).items()]
    return f"{task}({clip(', '.join(parts), max_args)})"


def _flow(edge: Mapping[str, Any]) -> str:
    """An edge's ``flow``; a hand-built edge without one passes the result on."""
    return str(edge.get("flow", "result"))


def _label(graph: nx.DiGraph, key: Hashable, max_args: int) -> str:
    """One-line name of a node: its call, behind ``join[n]`` or ``fanout[width]``."""
    data = graph.nodes[key]
    flows = [_flow(edge) for edge in graph.pred[key].values()]
    call = _call(data, "result" in flows, max_args)
    kind = data.get("kind", "task")
    if kind == "join":
        head = f"join[{flows.count('member')}]"
    elif kind == "fanout":
        head = f"fanout[{data.get('width', '?')}]"
    else:
        return call or f"<{kind}>"
    return f"{head} {call}".rstrip()


def node_view(graph: nx.DiGraph, key: Hashable, max_args: int) -> NodeView:
    data = graph.nodes[key]
    result = data.get("result")
    return NodeView(
        key=key,
        kind=data.get("kind", "task"),
        label=_label(graph, key, max_args),
        state=data.get("state"),
        short_id=_short_id(data.get("id")),
        result=None if result is None else clip(str(result), max_args),
        deferred=bool(data.get("deferred")),
        output=key == graph.graph.get("output"),
    )


def _views(graph: nx.DiGraph, keys: Iterable[Hashable], max_args: int) -> Iterator[NodeView]:
    return (node_view(graph, key, max_args) for key in keys)


def _order(graph: nx.DiGraph) -> list[Hashable]:
    # Keys are already topological positions inserted in order, which Timsort
    # recognises in linear time; sorting still copes with hand-built graphs.
    return sorted(graph.nodes)


def headline(graph: nx.DiGraph) -> str:
    """``workflow <root> (n nodes, output: #k)``: the first line of every format."""
    facts = [_nodes(len(graph))]
    if graph.graph.get("output") is not None:
        facts.append(f"output: #{graph.graph['output']}")
    root = _short_id(graph.graph.get("root_id"))
    name = f"workflow {root}" if root is not None else "workflow"
    return f"{name} ({', '.join(facts)})"


def _nodes(count: int, what: str = "nodes") -> str:
    """``1 node``, ``2 nodes``, ``1 more node``..."""
    return f"{count} {what[:-1] if count == 1 else what}"


def _edges(graph: nx.DiGraph, order: Iterable[Hashable]) -> Iterable[tuple[Any, Any, str]]:
    """``(source, target, flow)`` for every edge, grouped by source in node order."""
    for source in order:
        for target, data in graph.succ[source].items():
            yield source, target, _flow(data)


# -- text -----------------------------------------------------------------------------


def to_text(graph: nx.DiGraph, *, max_args: int = 40, max_nodes: int = 200) -> str:
    """A plain-text listing of the workflow for a terminal, one node per line.

    Nodes appear in topological order as ``#i label  <- parents   [state] id=... -> result``.
    ``...`` in the arguments is the parent's result. Beyond ``max_nodes`` nodes, the first
    and last ones are shown around a ``... k more nodes ...`` line, so a 100,000-step chain
    prints a screenful, not a log file.

    Raises ValueError if ``max_nodes`` is less than 1.
    """
    if max_nodes < 1:
        raise ValueError(f"max_nodes must be at least 1, got {max_nodes}")
    order = _order(graph)
    lines = [headline(graph)]
    if len(order) <= max_nodes:
        lines += _text_lines(graph, order, max_args)
        return "\n".join(lines)
    head = (max_nodes + 1) // 2
    lines += _text_lines(graph, order[:head], max_args)
    lines.append(f"... {_nodes(len(order) - max_nodes, 'more nodes')} ...")
    lines += _text_lines(graph, order[len(order) - (max_nodes - head) :], max_args)
    return "\n".join(lines)


def _text_lines(graph: nx.DiGraph, keys: list[Hashable], max_args: int) -> list[str]:
    return [_text_line(graph, view) for view in _views(graph, keys, max_args)]


def _text_line(graph: nx.DiGraph, view: NodeView) -> str:
    line = f"#{view.key} {view.label}"
    parents = _parents(graph, view.key)
    if parents:
        line += f"  <- {parents}"
    marks = view.details + [f"[{mark}]" for mark in view.marks]
    return f"{line}   {' '.join(marks)}" if marks else line


def _parents(graph: nx.DiGraph, key: Hashable) -> str:
    """``#0, #4..#9 (after)``: sources of the in-edges, members in index order."""
    edges = sorted(graph.pred[key].items(), key=lambda item: (item[1].get("index", -1), item[0]))
    words: list[str] = []
    run: list[Any] = []  # consecutive int sources sharing one note
    note = ""
    for source, data in edges:
        this_note = _EDGE_NOTES.get(_flow(data), "")
        follows = bool(run) and this_note == note and _is_next(run[-1], source)
        if not follows:
            words += _run_words(run, note)
            run, note = [], this_note
        run.append(source)
    words += _run_words(run, note)
    return ", ".join(words)


def _is_next(previous: Any, source: Any) -> bool:
    return isinstance(previous, int) and isinstance(source, int) and source == previous + 1


def _run_words(run: list[Any], note: str) -> list[str]:
    suffix = f" ({note})" if note else ""
    if len(run) >= MIN_RUN:
        return [f"#{run[0]}..#{run[-1]}{suffix}"]
    return [f"#{source}{suffix}" for source in run]


# -- Graphviz DOT ---------------------------------------------------------------------

_DOT_SHAPES: Mapping[str, str] = {"task": "box", "join": "diamond", "fanout": "box3d"}
_DOT_EDGE_STYLES: Mapping[str, str] = {"after": "dotted", "errback": "dashed"}


def to_dot(graph: nx.DiGraph, *, max_args: int = 40) -> str:
    """Graphviz source for the workflow: ``dot -Tsvg`` draws it left to right.

    Tasks are boxes, joins diamonds, fanouts 3-D boxes; errback entries have a dashed
    outline and are reached by dashed edges, steps that only wait (``after``) by dotted
    ones. Nodes with a state are filled with its colour; the output has a double border.
    """
    order = _order(graph)
    lines = ["digraph workflow {", f"  // {headline(graph)}", "  rankdir=LR;"]
    lines += [_dot_node(view) for view in _views(graph, order, max_args)]
    lines += [_dot_edge(source, target, flow) for source, target, flow in _edges(graph, order)]
    lines.append("}")
    return "\n".join(lines)


def _dot_quote(lines: list[str]) -> str:
    r"""One DOT string: ``\`` and ``"`` escaped, lines joined by DOT's ``\n``."""
    escaped = (line.replace("\\", "\\\\").replace('"', '\\"') for line in lines)
    return '"' + "\\n".join(escaped).replace("\n", "\\n") + '"'


def _dot_node(view: NodeView) -> str:
    attributes = [f"label={_dot_quote(view.lines)}", f"shape={_DOT_SHAPES.get(view.kind, 'box')}"]
    styles = ["dashed"] if view.deferred else []
    colour = STATE_COLOURS.get(view.state or "")
    if colour:
        styles.append("filled")
        attributes.append(f'fillcolor="{colour}"')
    if styles:
        attributes.append(f'style="{",".join(styles)}"')
    if view.output:
        attributes.append("peripheries=2")
    return f"  n{view.key} [{', '.join(attributes)}];"


def _dot_edge(source: Any, target: Any, flow: str) -> str:
    attributes = []
    if flow in _DOT_EDGE_STYLES:
        attributes.append(f"style={_DOT_EDGE_STYLES[flow]}")
    if flow in _EDGE_NOTES:
        attributes.append(f"label={_dot_quote([_EDGE_NOTES[flow]])}")
    suffix = f" [{', '.join(attributes)}]" if attributes else ""
    return f"  n{source} -> n{target}{suffix};"


# -- Mermaid --------------------------------------------------------------------------

#: Mermaid decodes ``#name;`` entity codes in labels; everything that could end the
#: label or be read as HTML or markdown becomes one, ``#`` included so that user text
#: such as ``#quot;`` stays literal.
_MERMAID_ESCAPES = str.maketrans(
    {"#": "#35;", '"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;", "`": "#96;", "\n": " "}
)
_MERMAID_SHAPES: Mapping[str, tuple[str, str]] = {
    "task": ('["', '"]'),
    "join": ('{"', '"}'),
    "fanout": ('[["', '"]]'),
}
_MERMAID_ARROWS: Mapping[str, str] = {"after": "-->|after|", "errback": "-.->|on failure|"}
_MERMAID_CLASSES: Mapping[str, str] = {
    **{state.lower(): f"fill:{colour}" for state, colour in STATE_COLOURS.items()},
    "errback": "stroke-dasharray:4 3",
    "output": "stroke-width:3px",
}


def to_mermaid(graph: nx.DiGraph, *, max_args: int = 40) -> str:
    """A Mermaid ``flowchart LR`` of the workflow, for Markdown docs and issue threads.

    Nodes are ``n0``, ``n1``...; joins are rhombi and fanouts subroutine boxes. Errback
    edges are dashed (``-.->``); a ``classDef`` per state present colours the nodes, and
    the ``errback`` and ``output`` classes mark those nodes.
    """
    order = _order(graph)
    lines = ["flowchart LR", f"  %% {headline(graph)}"]
    members: dict[str, list[str]] = {}
    for view in _views(graph, order, max_args):
        lines.append(_mermaid_node(view))
        for name in _mermaid_classes(view):
            members.setdefault(name, []).append(f"n{view.key}")
    lines += [
        f"  n{source} {_MERMAID_ARROWS.get(flow, '-->')} n{target}"
        for source, target, flow in _edges(graph, order)
    ]
    for name, style in _MERMAID_CLASSES.items():
        if name in members:
            lines.append(f"  classDef {name} {style}")
            lines.append(f"  class {','.join(members[name])} {name}")
    return "\n".join(lines)


def _mermaid_node(view: NodeView) -> str:
    opening, closing = _MERMAID_SHAPES.get(view.kind, _MERMAID_SHAPES["task"])
    label = "<br>".join(line.translate(_MERMAID_ESCAPES) for line in view.lines)
    return f"  n{view.key}{opening}{label}{closing}"


def _mermaid_classes(view: NodeView) -> list[str]:
    state = view.state or ""
    return ([state.lower()] if state in STATE_COLOURS else []) + view.marks


# -- dispatch -------------------------------------------------------------------------

_RENDERERS: Mapping[str, Callable[..., str]] = {
    "text": to_text,
    "dot": to_dot,
    "mermaid": to_mermaid,
}
#: Formats drawn by modules that build on this one, imported when first asked for.
_PICTURES: Mapping[str, tuple[str, str]] = {"svg": ("flowq.canvas.render_svg", "to_svg")}
FORMATS = (*_RENDERERS, *_PICTURES)


def render(graph: nx.DiGraph, format: str = "text", *, max_args: int = 40) -> str:
    """Render a workflow graph from ``sig.graph()`` as ``text``, ``dot``, ``mermaid`` or
    ``svg`` (a picture, see :mod:`flowq.canvas.render_svg`; PNG is
    :func:`flowq.canvas.render_png.to_png`, which returns bytes).

    ``max_args`` bounds each node's argument list (and result) in characters; longer
    ones end with ``…``. Use :func:`to_text` directly to change how many nodes the text
    format lists.

    Raises ValueError for an unknown format, naming the supported ones.
    """
    renderer = _RENDERERS.get(format)
    if renderer is None and format in _PICTURES:
        module, name = _PICTURES[format]
        renderer = getattr(importlib.import_module(module), name)
    if renderer is None:
        supported = ", ".join(FORMATS)
        raise ValueError(f"unknown graph format {format!r}; supported formats: {supported} "
                         f"(PNG, which is bytes: flowq.canvas.render_png.to_png)")
    return renderer(graph, max_args=max_args)
