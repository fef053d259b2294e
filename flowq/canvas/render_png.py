"""PNG pictures of workflow graphs: the layout of the SVG, painted with Pillow.

Pillow ships as self-contained wheels (no system library to install, unlike a cairo-based
SVG rasteriser), and is optional: ``pip install 'flowq[png]'``. The picture is the SVG's
(:mod:`flowq.canvas.render_svg`), drawn at ``scale`` times its size for sharp text: the
same boxes, colours, arrows and legend. Pure: returns bytes, does no I/O.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from typing import Any

import networkx as nx

from flowq.canvas.layout import (
    EDGE_COLOUR,
    LINE_HEIGHT,
    STROKE,
    SWATCH,
    Box,
    Edge,
    Layout,
    fill_of,
    layout,
)
from flowq.exceptions import MissingExtra

#: Pixels per picture unit: 2 draws a 600-unit-wide SVG as a 1200-pixel-wide PNG.
SCALE = 2
#: Points along each curved arrow, and the dash patterns (on, off) of the SVG.
_CURVE_STEPS = 24
_DASHES = {"after": (2.0, 3.0), "errback": (6.0, 3.0)}


def to_png(graph: nx.DiGraph, *, max_args: int = 40, scale: int = SCALE) -> bytes:
    """The workflow ``graph`` as a PNG image.

    Raises :class:`~flowq.exceptions.MissingExtra` when Pillow is not installed.
    """
    image_module, draw_module, font_module = _pillow()
    drawn = layout(graph, max_args=max_args)
    size = (math.ceil(drawn.width * scale), math.ceil(drawn.height * scale))
    image = image_module.new("RGB", size, "#ffffff")
    painter = _Painter(draw_module.Draw(image), font_module, scale)
    painter.paint(drawn)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _pillow() -> tuple[Any, Any, Any]:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise MissingExtra("PNG pictures need Pillow: pip install 'flowq[png]' (SVG needs "
                           "nothing: --format svg)") from None
    return Image, ImageDraw, ImageFont


class _Painter:
    """Draws a :class:`~flowq.canvas.layout.Layout` on a Pillow canvas, scaled."""

    def __init__(self, draw: Any, fonts: Any, scale: int):
        self.draw = draw
        self.scale = scale
        self.font = _font(fonts, 12 * scale)
        self.small = _font(fonts, 11 * scale)

    def paint(self, drawn: Layout) -> None:
        for edge in drawn.edges:
            self._edge(edge, drawn)
        for box in drawn.boxes.values():
            self._box(box)
        for swatch in drawn.legend:
            corner = self._at(swatch.x, swatch.y)
            self.draw.rectangle([corner, self._at(swatch.x + SWATCH, swatch.y + SWATCH)],
                                fill=fill_of(swatch.state), outline=STROKE, width=self.scale)
            self.draw.text(self._at(swatch.x + SWATCH + 4, swatch.y + SWATCH / 2),
                           swatch.state, font=self.font, fill="#000000", anchor="lm")

    def _at(self, x: float, y: float) -> tuple[float, float]:
        return x * self.scale, y * self.scale

    def _edge(self, edge: Edge, drawn: Layout) -> None:
        start = drawn.boxes[edge.source].right
        end = drawn.boxes[edge.target].left
        points = [self._at(x, y) for x, y in _curve(start, end)]
        dash = _DASHES.get(edge.flow)
        pieces = _dashed(points, dash[0] * self.scale, dash[1] * self.scale) if dash else [points]
        for piece in pieces:
            self.draw.line(piece, fill=EDGE_COLOUR, width=self.scale)
        self._arrowhead(points[-2], points[-1])
        if edge.flow == "errback":
            middle = self._at((start[0] + end[0]) / 2, (start[1] + end[1]) / 2 - 5)
            self.draw.text(middle, "on failure", font=self.small, fill=EDGE_COLOUR, anchor="mb")

    def _arrowhead(self, before: tuple[float, float], tip: tuple[float, float]) -> None:
        angle = math.atan2(tip[1] - before[1], tip[0] - before[0])
        length, half = 7 * self.scale, 3.5 * self.scale
        back = (tip[0] - length * math.cos(angle), tip[1] - length * math.sin(angle))
        side = (-math.sin(angle) * half, math.cos(angle) * half)
        self.draw.polygon([tip, (back[0] + side[0], back[1] + side[1]),
                           (back[0] - side[0], back[1] - side[1])], fill=EDGE_COLOUR)

    def _box(self, box: Box) -> None:
        x, y, w, h = box.x, box.y, box.width, box.height
        style = {"fill": fill_of(box.state), "outline": STROKE, "width": self.scale}
        if box.kind == "join":
            self.draw.polygon([self._at(x + w / 2, y), self._at(x + w, y + h / 2),
                               self._at(x + w / 2, y + h), self._at(x, y + h / 2)], **style)
        else:
            if box.kind == "fanout":  # a stack of boxes: one behind, up and to the right
                self._rounded(x + 4, y - 4, w, h, style)
            if box.deferred or box.kind == "more":  # dashed outline, as in the SVG
                self._rounded(x, y, w, h, {"fill": style["fill"]})
                corners = [self._at(*corner) for corner in
                           ((x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y))]
                for piece in _dashed(corners, 6.0 * self.scale, 3.0 * self.scale):
                    self.draw.line(piece, fill=STROKE, width=self.scale)
            else:
                self._rounded(x, y, w, h, style)
            if box.output:
                self._rounded(x + 3, y + 3, w - 6, h - 6,
                              {"outline": STROKE, "width": max(1, self.scale // 2)})
        top = y + (h - len(box.lines) * LINE_HEIGHT) / 2 + LINE_HEIGHT / 2
        for index, line in enumerate(box.lines):
            self.draw.text(self._at(x + w / 2, top + index * LINE_HEIGHT), line,
                           font=self.font if index == 0 else self.small, anchor="mm",
                           fill="#000000" if index == 0 else "#37474f")

    def _rounded(self, x: float, y: float, w: float, h: float, style: dict[str, Any]) -> None:
        self.draw.rounded_rectangle([self._at(x, y), self._at(x + w, y + h)],
                                    radius=4 * self.scale, **style)


def _font(fonts: Any, size: int) -> Any:
    """A monospace font where the system has one (the SVG's), else Pillow's own."""
    for name in ("DejaVuSansMono.ttf", "Menlo.ttc", "consola.ttf"):
        try:
            return fonts.truetype(name, size)
        except OSError:
            continue
    return fonts.load_default(size)


def _curve(start: tuple[float, float], end: tuple[float, float]
           ) -> list[tuple[float, float]]:
    """Points along the SVG's cubic curve from ``start`` to ``end`` (control points at the
    horizontal middle)."""
    (x1, y1), (x2, y2) = start, end
    middle = (x1 + x2) / 2
    points = []
    for step in range(_CURVE_STEPS + 1):
        t = step / _CURVE_STEPS
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
        points.append((a * x1 + (b + c) * middle + d * x2, (a + b) * y1 + (c + d) * y2))
    return points


def _dashed(points: Sequence[tuple[float, float]], on: float, off: float
            ) -> list[list[tuple[float, float]]]:
    """The ``on`` pieces of a polyline cut into dashes of ``on`` then gaps of ``off``."""
    pieces: list[list[tuple[float, float]]] = []
    drawing, left = True, on
    current = [points[0]]
    for start, end in _segments(points):
        length = math.dist(start, end)
        walked = 0.0
        while length - walked > left:
            walked += left
            t = walked / length
            cut = (start[0] + (end[0] - start[0]) * t, start[1] + (end[1] - start[1]) * t)
            if drawing:
                pieces.append([*current, cut])
            current = [cut]
            drawing = not drawing
            left = on if drawing else off
        left -= length - walked
        current.append(end)
    if drawing and len(current) > 1:
        pieces.append(current)
    return pieces


def _segments(points: Sequence[tuple[float, float]]
              ) -> Iterator[tuple[tuple[float, float], tuple[float, float]]]:
    return zip(points, points[1:], strict=False)
