"""SVG pictures of workflow graphs, drawn from :mod:`flowq.canvas.layout` (no Graphviz).

``render(graph, "svg")`` (or ``flowq graph ... --format svg``) returns one standalone SVG
document: tasks are rounded boxes, joins diamonds, fanouts stacked boxes, errback entries
have a dashed outline, the output a double border, and each node is filled with its
state's colour (:data:`flowq.canvas.render.STATE_COLOURS`; any other unfinished state,
such as a custom ``PROGRESS``, is drawn as running). Edges are curves with arrowheads:
dotted when a step only waits (``after``), dashed with "on failure" to an errback. A
legend names the colours present.

Every node is a ``<g class="node">`` carrying ``data-key``, ``data-kind``, ``data-state``
and ``data-id``, and every edge a ``<path class="edge">`` with ``data-source``,
``data-target`` and ``data-flow``, so pages and tests can find them. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from xml.sax.saxutils import escape

import networkx as nx

from flowq.canvas.layout import (
    EDGE_COLOUR,
    LINE_HEIGHT,
    STROKE,
    SWATCH,
    Box,
    Layout,
    Swatch,
    errback_note,
    fill_of,
    layout,
)

FONT = "DejaVu Sans Mono, Menlo, Consolas, monospace"
_DASHES = {"after": "2 3", "errback": "6 3"}


def to_svg(graph: nx.DiGraph, *, max_args: int = 40) -> str:
    """The workflow ``graph`` as an SVG document (see the module docstring)."""
    drawn = layout(graph, max_args=max_args)
    width, height = _n(drawn.width), _n(drawn.height)
    parts = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'viewBox="0 0 {width} {height}" font-family="{FONT}" font-size="12">'),
        f"<title>{_text(drawn.title)}</title>",
        ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
         f'markerHeight="7" orient="auto"><path d="M 0 0 L 10 5 L 0 10 z" '
         f'fill="{EDGE_COLOUR}"/></marker></defs>'),
        f'<rect class="background" width="{width}" height="{height}" fill="#ffffff"/>',
        '<g class="edges">', *_edges(drawn), "</g>",
        '<g class="nodes">', *(_node(box) for box in drawn.boxes.values()), "</g>",
        '<g class="legend">', *(_swatch(swatch) for swatch in drawn.legend), "</g>",
        "</svg>",
    ]
    return "\n".join(parts) + "\n"


def _edges(drawn: Layout) -> Iterator[str]:
    for edge in drawn.edges:
        x1, y1 = drawn.boxes[edge.source].right
        x2, y2 = drawn.boxes[edge.target].left
        middle = (x1 + x2) / 2
        dash = _DASHES.get(edge.flow)
        style = f' stroke-dasharray="{dash}"' if dash else ""
        note = errback_note(edge.scope) if edge.flow == "errback" else None
        yield (f'<path class="edge" data-source="{_key(edge.source)}" '
               f'data-target="{_key(edge.target)}" data-flow="{_attr(edge.flow)}" '
               f'd="M {_n(x1)} {_n(y1)} C {_n(middle)} {_n(y1)}, {_n(middle)} {_n(y2)}, '
               f'{_n(x2)} {_n(y2)}" fill="none" stroke="{EDGE_COLOUR}" stroke-width="1.2"{style} '
               f'marker-end="url(#arrow)">' + (f"<title>{_text(note)}</title>" if note else "")
               + "</path>")
        if note:
            yield (f'<text class="edge-label" x="{_n(middle)}" y="{_n((y1 + y2) / 2 - 5)}" '
                   f'text-anchor="middle" font-size="10" fill="{EDGE_COLOUR}">on failure</text>')


def _node(box: Box) -> str:
    fill = fill_of(box.state)
    dash = ' stroke-dasharray="6 3"' if box.deferred or box.kind == "more" else ""
    outline = f'fill="{fill}" stroke="{STROKE}" stroke-width="1.2"{dash}'
    x, y, w, h = box.x, box.y, box.width, box.height
    if box.kind == "join":
        points = f"{_n(x + w / 2)},{_n(y)} {_n(x + w)},{_n(y + h / 2)} " \
                 f"{_n(x + w / 2)},{_n(y + h)} {_n(x)},{_n(y + h / 2)}"
        shapes = [f'<polygon points="{points}" {outline}/>']
    else:
        shapes = [_rect(x, y, w, h, outline)]
        if box.kind == "fanout":  # a stack of boxes: one behind, up and to the right
            shapes.insert(0, _rect(x + 4, y - 4, w, h, outline))
        if box.output:
            shapes.append(_rect(x + 3, y + 3, w - 6, h - 6, f'fill="none" stroke="{STROKE}"'))
    top = y + (h - len(box.lines) * LINE_HEIGHT) / 2 + LINE_HEIGHT - 4
    texts = [f'<text x="{_n(x + w / 2)}" y="{_n(top + i * LINE_HEIGHT)}" text-anchor="middle"'
             f'{_line_style(i)}>{_text(line)}</text>' for i, line in enumerate(box.lines)]
    data = (f'class="node" data-key="{_key(box.key)}" data-kind="{box.kind}" '
            f'data-state="{_attr(box.state or "")}" data-id="{_attr(box.task_id or "")}"')
    tooltip = f"<title>{_text(box.tooltip)}</title>" if box.tooltip else ""
    return f"<g {data}>{tooltip}{''.join(shapes)}{''.join(texts)}</g>"


def _rect(x: float, y: float, w: float, h: float, style: str) -> str:
    return f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="4" {style}/>'


def _line_style(index: int) -> str:
    """The first line (the call) in full colour, the details line softer."""
    return "" if index == 0 else ' fill="#37474f" font-size="11"'


def _swatch(swatch: Swatch) -> str:
    x, y = swatch.x, swatch.y
    return (f'<rect x="{_n(x)}" y="{_n(y)}" width="{SWATCH}" height="{SWATCH}" '
            f'fill="{fill_of(swatch.state)}" stroke="{STROKE}"/><text x="{_n(x + SWATCH + 4)}" '
            f'y="{_n(y + SWATCH - 2)}">{_text(swatch.state)}</text>')


def _n(value: float) -> str:
    """A coordinate with at most one decimal, no trailing zeros (stable, short output)."""
    return f"{value:.1f}".removesuffix(".0")


def _key(key: object) -> str:
    """A node's key as an attribute: its position, or ``more-<column>`` for a summary."""
    return "-".join(map(str, key)) if isinstance(key, tuple) else _attr(key)


def _text(value: object) -> str:
    return escape(str(value))


def _attr(value: object) -> str:
    return escape(str(value), {'"': "&quot;"})
