"""SVG and PNG pictures of workflows, drawn without Graphviz: the layout (layers, crossing
reduction, cut-short layers and chains), the SVG parsed back with ElementTree, and the
PNG's pixels read back with Pillow."""

from __future__ import annotations

import io
import itertools
import math
import sys
import xml.etree.ElementTree as ET
from collections.abc import Hashable, Sequence

import networkx as nx
import pytest
from click.testing import CliRunner
from PIL import Image

from flowq import chain, chord, fanout, states
from flowq.canvas.graph import to_graph
from flowq.canvas.layout import fill_of, layout, order_layers
from flowq.canvas.render import STATE_COLOURS, render
from flowq.canvas.render_png import to_png
from flowq.cli import main
from flowq.exceptions import MissingExtra

from .tasks import add, app, errback, numbers, process, tsum

SVG = "{http://www.w3.org/2000/svg}"


def live(canvas: object, node_states: Sequence[str | None]) -> nx.DiGraph:
    """The graph of ``canvas`` as sent (with ids), its nodes in ``node_states``."""
    graph = to_graph(app.compile(canvas))  # type: ignore[arg-type]
    for key, state in zip(sorted(graph.nodes), node_states, strict=True):
        if state is not None:
            graph.nodes[key]["state"] = state
    return graph


def parse(svg: str) -> tuple[dict[str, ET.Element], list[ET.Element]]:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    nodes = {g.get("data-key"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    edges = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    return nodes, edges  # type: ignore[return-value]


def fills(node: ET.Element) -> list[str | None]:
    return [shape.get("fill") for shape in node if shape.tag in (f"{SVG}rect", f"{SVG}polygon")]


def texts(node: ET.Element) -> list[str]:
    return [text.text or "" for text in node.iter(f"{SVG}text")]


CHORD_WITH_ERRBACK = (add.s(1, 1) | chord([add.s(i) for i in range(3)], tsum.s())).on_error(
    errback.s())
CHORD_STATES = [states.SUCCESS, states.SUCCESS, states.FAILURE, states.STARTED,
                states.FAILURE, states.FAILURE, None]


def test_svg_has_every_node_coloured_by_state_with_its_label_and_id() -> None:
    graph = live(CHORD_WITH_ERRBACK, CHORD_STATES)
    nodes, _ = parse(render(graph, "svg"))
    assert sorted(nodes, key=int) == [str(key) for key in sorted(graph.nodes)]
    for key, data in graph.nodes(data=True):
        node = nodes[str(key)]
        state = data.get("state")
        assert node.get("data-state") == (state or "")
        assert node.get("data-kind") == data["kind"]
        assert node.get("data-id") == data["id"]
        assert fills(node)[0] == (STATE_COLOURS[state] if state else "#ffffff")
        lines = texts(node)
        assert lines[1] == (f"[{state}] " if state else "") + f"id={data['id'][:8]}"
        if data["task"]:  # the short name in the box, the whole one in the tooltip
            assert lines[0].startswith(data["task"].rpartition(".")[2] + "(")
            assert node.find(f"{SVG}title").text.startswith(data["task"])
    assert nodes["4"].find(f"{SVG}polygon") is not None  # the join is a diamond
    assert len(fills(nodes["5"])) == 2  # the output has a double border


def test_svg_edges_follow_the_graph_and_point_right() -> None:
    graph = live(CHORD_WITH_ERRBACK, CHORD_STATES)
    svg = render(graph, "svg")
    _, edges = parse(svg)
    drawn = {(edge.get("data-source"), edge.get("data-target"), edge.get("data-flow"))
             for edge in edges}
    wanted = {(str(s), str(t), d["flow"]) for s, t, d in graph.edges(data=True)
              if d["flow"] != "errback"}
    assert drawn - wanted == {("5", "6", "errback")}  # one arrow from the scope's last node
    assert wanted <= drawn
    boxes = layout(graph).boxes
    assert all(boxes[s].x + boxes[s].width < boxes[t].x for s, t in graph.edges)
    errback_edge = next(edge for edge in edges if edge.get("data-flow") == "errback")
    assert errback_edge.get("stroke-dasharray") == "6 3"
    assert errback_edge.find(f"{SVG}title").text == "on failure of any of 5 nodes"  # not the join


def test_the_legend_names_the_states_drawn() -> None:
    graph = live(CHORD_WITH_ERRBACK, CHORD_STATES)
    root = ET.fromstring(render(graph, "svg"))
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")] == [states.STARTED, states.SUCCESS,
                                                           states.FAILURE]


def test_custom_states_look_running_and_text_is_escaped() -> None:
    graph = live(add.s("<&>", '"'), ["PROGRESS"])
    nodes, _ = parse(render(graph, "svg"))  # parses: everything is escaped
    assert fills(nodes["0"])[0] == STATE_COLOURS[states.STARTED]
    assert texts(nodes["0"])[0] == "add('<&>', '\"')"
    assert fill_of(states.REVOKED) == STATE_COLOURS[states.REVOKED]


def crossings(graph: nx.DiGraph, layers: Sequence[Sequence[Hashable]]) -> int:
    total = 0
    for upper, lower in itertools.pairwise(layers):
        where = {key: i for i, key in enumerate(lower)}
        spans = [(i, where[t]) for i, key in enumerate(upper) for t in graph.succ[key]
                 if t in where]
        total += sum(1 for a, b in spans for c, d in spans if a < c and b > d)
    return total


def test_barycentre_ordering_removes_crossings() -> None:
    # Given two layers whose order by key crosses every edge
    graph = nx.DiGraph()
    graph.add_edges_from([(0, 5), (1, 4), (2, 3)])
    layers = [[0, 1, 2], [3, 4, 5]]
    assert crossings(graph, layers) == 3
    # Then the sweeps untangle them, and keep an uncrossed order as it is
    ordered = order_layers(graph, layers)
    assert crossings(graph, ordered) == 0
    straight = nx.DiGraph([(0, 3), (1, 4), (2, 5)])
    assert order_layers(straight, layers) == layers


def test_a_wide_layer_is_cut_short_keeping_failures_in_sight() -> None:
    canvas = chord([add.s(i, i) for i in range(100)], tsum.s())
    node_states = [states.SUCCESS] * 102
    node_states[40] = node_states[90] = states.FAILURE
    drawn = layout(live(canvas, node_states))
    join = drawn.boxes[100]
    first = [box for box in drawn.boxes.values() if box.x < join.x]
    assert len(first) == 12
    assert {40, 90} <= {box.key for box in first}
    summary = drawn.boxes[("more", 0)]
    assert summary.lines == ("+89 more", "89 SUCCESS")
    assert ("more", 0) in {edge.source for edge in drawn.edges}


def test_a_long_chain_keeps_its_ends_and_sums_up_its_middle() -> None:
    canvas = chain(add.s(0, 0), *(add.s(1) for _ in range(199)))
    drawn = layout(live(canvas, [states.SUCCESS] * 200), max_layers=10)
    assert len(drawn.boxes) == 10
    assert drawn.boxes[("more", 5)].lines == ("+191 more", "191 SUCCESS")
    assert {0, 4, 196, 199} <= set(drawn.boxes)
    with pytest.raises(ValueError, match="max_layers at least 3"):
        layout(live(canvas, [None] * 200), max_layers=2)


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def test_png_paints_the_same_boxes_in_the_same_colours() -> None:
    graph = live((numbers.s(3) | fanout(process.s()) | tsum.s()).on_error(errback.s()),
                 [states.SUCCESS, states.STARTED, states.PENDING, None])
    image = Image.open(io.BytesIO(to_png(graph, scale=2)))
    drawn = layout(graph)
    assert image.size == (math.ceil(drawn.width * 2), math.ceil(drawn.height * 2))
    for box in drawn.boxes.values():
        inside = (round((box.x + 6) * 2), round((box.y + box.height / 2) * 2))
        assert image.getpixel(inside) == rgb(fill_of(box.state)), box
    assert image.getpixel((2, 2)) == (255, 255, 255)


def test_png_without_pillow_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(MissingExtra, match=r"pip install 'flowq\[png\]'"):
        to_png(live(add.s(1, 1), [None]))


def test_flowq_graph_writes_svg_and_png(tmp_path: object) -> None:
    runner = CliRunner()
    target = "examples.workflows.quickstart:workflow_chord"
    svg = runner.invoke(main, ["graph", target, "--format", "svg"])
    assert svg.exit_code == 0, svg.output
    nodes, edges = parse(svg.output)
    assert len(nodes) == 12 and len(edges) == 11  # ten members, a join, the body
    png = tmp_path / "chord.png"  # type: ignore[operator]
    done = runner.invoke(main, ["graph", target, "--format", "png", "-o", str(png)])
    assert done.exit_code == 0, done.output
    assert Image.open(png).format == "PNG"
