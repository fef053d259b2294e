"""Where each node of a workflow graph goes in a picture: a layered left-to-right layout.

No Graphviz: the graph from ``sig.graph()`` (or a live one) is laid out here, in three
steps, and :mod:`flowq.canvas.render_svg` / :mod:`flowq.canvas.render_png` paint it.

1. **Layers**: ``networkx.topological_generations``: a node sits one layer right of its
   furthest predecessor, so every edge points right.
2. **Order within layers**: barycentre sweeps (Sugiyama's heuristic): each layer is
   sorted by the mean position of its neighbours in the layers before it, then after it,
   a few times over, which removes most edge crossings.
3. **Coordinates**: layers are columns as wide as their widest box; boxes are stacked
   and centred in their column.

Big workflows stay readable: a layer of more than ``max_per_layer`` nodes (a chord of
1,000) shows its first ones (failed and running ones first, so they are never hidden)
and one summary box for the rest with their state counts, and beyond ``max_layers``
layers (a long chain) the middle layers become one summary column. Edges to hidden
nodes end at their summary box. Pure: no I/O.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import attrs
import networkx as nx

from flowq import states
from flowq.canvas.render import STATE_COLOURS, clip, headline, node_view

#: Pixels: text metrics of the 12 px monospace font the pictures use, and spacing.
CHAR_WIDTH = 7.2
LINE_HEIGHT = 16
PAD_X, PAD_Y = 10, 7
GAP_X, GAP_Y = 80, 16
MARGIN = 20
#: Barycentre passes (down and up each).
SWEEPS = 4
#: Characters of a result shown in a box (the tooltip has it all).
RESULT_CHARS = 32
#: Most boxes drawn in one layer, and most layers drawn; the rest are summed up.
MAX_PER_LAYER = 12
MAX_LAYERS = 60
#: States shown before others when a layer is cut short.
_NOTABLE = frozenset({states.FAILURE, states.REVOKED, states.STARTED, states.RECEIVED,
                      states.RETRY})


@attrs.frozen(slots=True)
class Box:
    """One drawn node: the graph's key (or ``("more", layer)`` for a summary box)."""

    key: Any
    kind: str  # task, join, fanout, or more (a summary of hidden nodes)
    lines: tuple[str, ...]
    state: str | None
    x: float
    y: float
    width: float
    height: float
    deferred: bool = False
    output: bool = False
    task_id: str | None = None
    #: everything known about the node, uncut (a picture's tooltip)
    tooltip: str = ""

    @property
    def left(self) -> tuple[float, float]:
        return self.x, self.y + self.height / 2

    @property
    def right(self) -> tuple[float, float]:
        return self.x + self.width, self.y + self.height / 2


@attrs.frozen(slots=True)
class Edge:
    """An arrow; ``scope`` counts the nodes an errback arrow stands for (see :func:`_edges`)."""

    source: Any
    target: Any
    flow: str
    scope: int = 1


@attrs.frozen(slots=True)
class Swatch:
    """One entry of the legend: a square of ``state``'s colour at ``(x, y)``, its name after."""

    state: str
    x: float
    y: float


@attrs.frozen(slots=True)
class Layout:
    """Boxes, edges and the legend with coordinates, and the picture's size."""

    title: str
    boxes: Mapping[Any, Box]
    edges: tuple[Edge, ...]
    legend: tuple[Swatch, ...]
    width: float
    height: float


#: The order of states in the legend (others follow, sorted).
STATE_ORDER = (states.PENDING, states.RECEIVED, states.STARTED, states.RETRY, states.SUCCESS,
               states.FAILURE, states.REVOKED)
#: What both painters share: outline and arrow colours, the fill of each state.
STROKE = "#424242"
EDGE_COLOUR = "#616161"
NO_STATE = "#ffffff"  # a node without a state (a canvas not sent), or one finished oddly
SWATCH = 12


def fill_of(state: str | None) -> str:
    """The colour a node in ``state`` is filled with: :data:`STATE_COLOURS`, and for any
    other unfinished state (a custom ``PROGRESS``) the colour of a running task."""
    if state is None:
        return NO_STATE
    running = STATE_COLOURS[states.STARTED]
    return STATE_COLOURS.get(state, NO_STATE if state in states.READY_STATES else running)


def layout(graph: nx.DiGraph, *, max_args: int = 40, max_per_layer: int = MAX_PER_LAYER,
           max_layers: int = MAX_LAYERS) -> Layout:
    """Lay ``graph`` out left to right (see the module docstring).

    Raises ValueError if ``max_per_layer`` is less than 2 or ``max_layers`` less than 3
    (something must be shown beside a summary).
    """
    if max_per_layer < 2 or max_layers < 3:
        raise ValueError(f"max_per_layer must be at least 2 and max_layers at least 3, got "
                         f"{max_per_layer} and {max_layers}")
    layers = order_layers(graph, [sorted(layer) for layer in nx.topological_generations(graph)])
    columns = _columns(graph, layers, max_per_layer, max_layers)
    placed: list[list[Box]] = []
    x = float(MARGIN)
    for number, (keys, hidden) in enumerate(columns):
        column = [_box(graph, key, max_args) for key in keys]
        if hidden:
            column.append(_summary(graph, number, hidden))
        width = max(box.width for box in column)
        placed.append([attrs.evolve(box, x=x + (width - box.width) / 2) for box in column])
        x += width + GAP_X
    tallest = max((_stacked(column) for column in placed), default=0.0)
    boxes: dict[Any, Box] = {}
    for column in placed:
        y = MARGIN + (tallest - _stacked(column)) / 2
        for box in column:
            boxes[box.key] = attrs.evolve(box, y=y)
            y += box.height + GAP_Y
    summary = {key: ("more", number) for number, (_, hidden) in enumerate(columns)
               for key in hidden}
    legend = _legend(boxes.values(), tallest + MARGIN + PAD_Y)
    width = max(x - GAP_X + MARGIN, legend[-1].x + _swatch_width(legend[-1].state) + MARGIN
                if legend else 0.0, 2.0 * MARGIN)
    height = tallest + 2 * MARGIN + (SWATCH + 2 * PAD_Y if legend else 0)
    return Layout(headline(graph), boxes, _edges(graph, summary), legend, width, height)


def order_layers(graph: nx.DiGraph, layers: Sequence[Sequence[Hashable]],
                 sweeps: int = SWEEPS) -> list[list[Hashable]]:
    """``layers`` reordered by barycentre sweeps to reduce edge crossings.

    A node's barycentre is the mean relative position (0..1 within its layer) of its
    neighbours in earlier layers on a downward sweep, later layers on an upward one; a
    node without such neighbours keeps its place. Sorting is stable, so ties keep the
    previous order and the result is deterministic.
    """
    ordered = [list(layer) for layer in layers]
    position: dict[Hashable, float] = {}

    def place(layer: list[Hashable]) -> None:
        for index, key in enumerate(layer):
            position[key] = index / max(len(layer) - 1, 1)

    for layer in ordered:
        place(layer)
    for _ in range(sweeps):
        for downward in (True, False):
            sequence = range(1, len(ordered)) if downward else range(len(ordered) - 2, -1, -1)
            for number in sequence:
                layer = ordered[number]
                near = graph.pred if downward else graph.succ
                layer.sort(key=functools.partial(_barycentre, near=near, position=position))
                place(layer)
    return ordered


def _barycentre(key: Hashable, *, near: Any, position: Mapping[Hashable, float]) -> float:
    places = [position[other] for other in near[key] if other in position]
    return sum(places) / len(places) if places else position[key]


def _columns(graph: nx.DiGraph, layers: list[list[Hashable]], max_per_layer: int,
             max_layers: int) -> list[tuple[list[Hashable], list[Hashable]]]:
    """``(keys drawn, keys summed up)`` per column: the middle layers merged into one
    hidden column beyond ``max_layers``, then each column cut to ``max_per_layer``."""
    if len(layers) > max_layers:
        head = max_layers // 2
        tail = max_layers - head - 1
        middle = [key for layer in layers[head:len(layers) - tail] for key in layer]
        columns: list[tuple[list[Hashable], list[Hashable]]] = [
            (layer, []) for layer in layers[:head]]
        columns.append(([], middle))
        columns += [(layer, []) for layer in layers[len(layers) - tail:]]
    else:
        columns = [(layer, []) for layer in layers]
    return [_cut(graph, keys, max_per_layer) if len(keys) > max_per_layer else (keys, hidden)
            for keys, hidden in columns]


def _cut(graph: nx.DiGraph, layer: list[Hashable], limit: int
         ) -> tuple[list[Hashable], list[Hashable]]:
    """The keys of ``layer`` drawn (notable states first, at most ``limit - 1``: the
    summary box takes the last place) and the keys summed up, both in layer order."""
    room = limit - 1
    keep = {key for key in layer if graph.nodes[key].get("state") in _NOTABLE}
    if len(keep) > room:
        keep = set([key for key in layer if key in keep][:room])
    for key in layer:
        if len(keep) >= room:
            break
        keep.add(key)
    return [key for key in layer if key in keep], [key for key in layer if key not in keep]


def _box(graph: nx.DiGraph, key: Hashable, max_args: int) -> Box:
    """A node's box: its call with the task's short name (``download(3)``), its state and
    short id, and its result cut to :data:`RESULT_CHARS` (not a join's: the list of its
    members' results), one per line."""
    view = node_view(graph, key, max_args)
    task = graph.nodes[key].get("task")
    label = view.label.replace(task, task.rpartition(".")[2], 1) if task else view.label
    details = [f"[{view.state}]"] if view.state else []
    details += [f"id={view.short_id}"] if view.short_id else []
    lines = [label, *([" ".join(details)] if details else [])]
    if view.result is not None and view.kind != "join":  # a join's is its members' list
        lines.append(clip(f"-> {view.result}", RESULT_CHARS))
    width, height = _size(lines, view.kind)
    tooltip = "\n".join(view.lines + [f"path: {graph.nodes[key]['path']}"]
                        if graph.nodes[key].get("path") else view.lines)
    return Box(key, view.kind, tuple(lines), view.state, 0.0, 0.0, width, height,
               view.deferred, view.output, graph.nodes[key].get("id"), tooltip)


def _summary(graph: nx.DiGraph, number: int, hidden: list[Hashable]) -> Box:
    counts = Counter(graph.nodes[key].get("state") or "?" for key in hidden)
    tally = ", ".join(f"{count} {state}" for state, count in counts.most_common())
    lines = (f"+{len(hidden)} more", tally)
    width, height = _size(lines, "more")
    common = counts.most_common(1)[0][0]
    return Box(("more", number), "more", lines, None if common == "?" else common, 0.0, 0.0,
               width, height)


def _size(lines: Sequence[str], kind: str) -> tuple[float, float]:
    width = max(len(line) for line in lines) * CHAR_WIDTH + 2 * PAD_X
    height = float(len(lines) * LINE_HEIGHT + 2 * PAD_Y)
    if kind == "join":  # a diamond leaves room around the text at its middle
        width, height = width * 1.5, height * 1.5
    return width, height


def _legend(boxes: Iterable[Box], y: float) -> tuple[Swatch, ...]:
    """A swatch per state drawn, in :data:`STATE_ORDER`, left to right under the graph."""
    present = {box.state for box in boxes if box.state}
    names = [state for state in STATE_ORDER if state in present]
    names += sorted(present - set(STATE_ORDER))
    swatches = []
    x = float(MARGIN)
    for name in names:
        swatches.append(Swatch(name, x, y))
        x += _swatch_width(name) + PAD_X
    return tuple(swatches)


def _swatch_width(name: str) -> float:
    return SWATCH + 4 + len(name) * CHAR_WIDTH


def _stacked(column: Sequence[Box]) -> float:
    return sum(box.height for box in column) + GAP_Y * (len(column) - 1)


def _edges(graph: nx.DiGraph, summary: Mapping[Hashable, Any]) -> tuple[Edge, ...]:
    """Every edge, with hidden ends moved to their summary box (each pair drawn once).

    An errback is reached from every node of its scope; one arrow from the scope's last
    node stands for all of them (its ``scope`` says how many), instead of a fan of
    arrows across the picture.
    """
    seen: set[tuple[Any, Any, str]] = set()
    edges = []
    scopes: dict[Any, list[Any]] = {}
    for source, target, data in graph.edges(data=True):
        flow = str(data.get("flow", "result"))
        if flow == "errback":
            scopes.setdefault(target, []).append(source)
            continue
        edge = (summary.get(source, source), summary.get(target, target), flow)
        if edge not in seen and edge[0] != edge[1]:
            seen.add(edge)
            edges.append(Edge(*edge))
    for target, sources in scopes.items():
        last = max(sources, key=_sort_key)
        edges.append(Edge(summary.get(last, last), summary.get(target, target), "errback",
                          len(sources)))
    return tuple(edges)


def errback_note(scope: int) -> str:
    """What an errback arrow standing for ``scope`` nodes means (its tooltip)."""
    return "on failure" if scope == 1 else f"on failure of any of {scope} nodes"


def _sort_key(key: Any) -> tuple[str, Any]:
    """Orders keys of any one type (positions, names) without comparing across types."""
    return type(key).__name__, key
