"""Text, DOT and Mermaid rendering of workflow graphs built by hand, as sig.graph() would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

from flowq.canvas.render import render, to_dot, to_mermaid, to_text


def add(graph: nx.DiGraph, key: int, task: str | None, *args: Any, **attrs: Any) -> None:
    """Add a node carrying every attribute the compiler sets; ``attrs`` override them."""
    defaults = {
        "kind": "task",
        "task": task,
        "args": args,
        "kwargs": {},
        "options": {},
        "immutable": False,
        "path": "",
        "id": None,
        "deferred": False,
    }
    graph.add_node(key, **{**defaults, **attrs})


def chain_graph() -> nx.DiGraph:
    """add(2, 2) | mul.s(10) | log.s(level='info')"""
    graph = nx.DiGraph(output=2)
    add(graph, 0, "tasks.add", 2, 2, path="chain[0]")
    add(graph, 1, "tasks.mul", 10, path="chain[1]")
    add(graph, 2, "tasks.log", kwargs={"level": "info"}, path="chain[2]")
    graph.add_edge(0, 1, flow="result")
    graph.add_edge(1, 2, flow="result")
    return graph


def chord_graph() -> nx.DiGraph:
    """add(2, 2) | chord([mul.s(10), mul.s(20)], tsum.s())"""
    graph = nx.DiGraph(output=4)
    add(graph, 0, "tasks.add", 2, 2)
    add(graph, 1, "tasks.mul", 10)
    add(graph, 2, "tasks.mul", 20)
    add(graph, 3, None, kind="join")
    add(graph, 4, "tasks.tsum")
    graph.add_edge(0, 1, flow="result")
    graph.add_edge(0, 2, flow="result")
    graph.add_edge(1, 3, flow="member", index=0)
    graph.add_edge(2, 3, flow="member", index=1)
    graph.add_edge(3, 4, flow="result")
    return graph


def live_chord_graph() -> nx.DiGraph:
    """The chord above while it runs: one member failed, the body still waits."""
    graph = chord_graph()
    graph.graph["root_id"] = "c0ffee00-0000-4000-8000-000000000000"
    progress = [
        ("SUCCESS", "4"),
        ("SUCCESS", "40"),
        ("FAILURE", "ValueError('boom')"),
        ("PENDING", None),
        ("PENDING", None),
    ]
    for key, (state, result) in enumerate(progress):
        graph.nodes[key].update(state=state, id=f"{key}a2b3c4d-5e6f-4000-8000-00000000000{key}")
        if result is not None:
            graph.nodes[key]["result"] = result
    return graph


def fanout_graph(width: int | None = None) -> nx.DiGraph:
    """list_urls('site') | fanout(fetch.s(timeout=5)) | merge.s()"""
    graph = nx.DiGraph(output=2)
    add(graph, 0, "tasks.list_urls", "site")
    extra = {} if width is None else {"width": width}
    add(graph, 1, "tasks.fetch", kind="fanout", kwargs={"timeout": 5}, **extra)
    add(graph, 2, "tasks.merge")
    graph.add_edge(0, 1, flow="result")
    graph.add_edge(1, 2, flow="result")
    return graph


def errback_graph() -> nx.DiGraph:
    """charge.s(7).on_error(refund.si(7)) | ship.si(): ship waits, refund runs on failure."""
    graph = nx.DiGraph(output=1)
    add(graph, 0, "tasks.charge", 7)
    add(graph, 1, "tasks.ship", immutable=True)
    add(graph, 2, "tasks.refund", 7, immutable=True, deferred=True)
    graph.add_edge(0, 1, flow="after")
    graph.add_edge(0, 2, flow="errback")
    return graph


def chain_of(length: int) -> nx.DiGraph:
    graph = nx.DiGraph(output=length - 1)
    for key in range(length):
        add(graph, key, "tasks.step", key)
        if key:
            graph.add_edge(key - 1, key, flow="result")
    return graph


# -- text -----------------------------------------------------------------------------


def test_text_chain_lists_nodes_in_order_with_result_marker_and_kwargs() -> None:
    assert to_text(chain_graph()).splitlines() == [
        "workflow (3 nodes, output: #2)",
        "#0 tasks.add(2, 2)",
        "#1 tasks.mul(..., 10)  <- #0",
        "#2 tasks.log(..., level='info')  <- #1   [output]",
    ]


def test_text_chord_shows_join_with_its_members() -> None:
    assert render(chord_graph()).splitlines() == [
        "workflow (5 nodes, output: #4)",
        "#0 tasks.add(2, 2)",
        "#1 tasks.mul(..., 10)  <- #0",
        "#2 tasks.mul(..., 20)  <- #0",
        "#3 join[2]  <- #1, #2",
        "#4 tasks.tsum(...)  <- #3   [output]",
    ]


def test_text_live_graph_shows_state_short_id_and_result() -> None:
    assert to_text(live_chord_graph()).splitlines() == [
        "workflow c0ffee00 (5 nodes, output: #4)",
        "#0 tasks.add(2, 2)   [SUCCESS] id=0a2b3c4d -> 4",
        "#1 tasks.mul(..., 10)  <- #0   [SUCCESS] id=1a2b3c4d -> 40",
        "#2 tasks.mul(..., 20)  <- #0   [FAILURE] id=2a2b3c4d -> ValueError('boom')",
        "#3 join[2]  <- #1, #2   [PENDING] id=3a2b3c4d",
        "#4 tasks.tsum(...)  <- #3   [PENDING] id=4a2b3c4d [output]",
    ]


@pytest.mark.parametrize(("width", "head"), [(None, "fanout[?]"), (3, "fanout[3]")])
def test_text_fanout_shows_width_once_expanded(width: int | None, head: str) -> None:
    assert to_text(fanout_graph(width)).splitlines() == [
        "workflow (3 nodes, output: #2)",
        "#0 tasks.list_urls('site')",
        f"#1 {head} tasks.fetch(..., timeout=5)  <- #0",
        "#2 tasks.merge(...)  <- #1   [output]",
    ]


def test_text_errback_and_after_edges_are_named() -> None:
    assert to_text(errback_graph()).splitlines() == [
        "workflow (3 nodes, output: #1)",
        "#0 tasks.charge(7)",
        "#1 tasks.ship()  <- #0 (after)   [output]",
        "#2 tasks.refund(7)  <- #0 (on failure)   [errback]",
    ]


def test_text_wide_join_lists_consecutive_members_as_a_range() -> None:
    # Given a group of 100 members joined in index order, plus two out of order
    graph = nx.DiGraph()
    for key in range(100):
        add(graph, key, "tasks.part", key)
    add(graph, 100, "tasks.a")
    add(graph, 101, "tasks.b")
    add(graph, 102, None, kind="join")
    for index, source in enumerate([*range(100), 101, 100]):
        graph.add_edge(source, 102, flow="member", index=index)

    # Then the join line stays short and keeps the member order
    assert to_text(graph).splitlines()[-1] == "#102 join[102]  <- #0..#99, #101, #100"


def test_text_collapses_a_long_chain_around_a_count() -> None:
    lines = to_text(chain_of(1000), max_nodes=40).splitlines()

    assert len(lines) == 1 + 40 + 1
    assert lines[0] == "workflow (1000 nodes, output: #999)"
    assert lines[1] == "#0 tasks.step(0)"
    assert lines[20] == "#19 tasks.step(..., 19)  <- #18"
    assert lines[21] == "... 960 more nodes ..."
    assert lines[22] == "#980 tasks.step(..., 980)  <- #979"
    assert lines[-1] == "#999 tasks.step(..., 999)  <- #998   [output]"


def test_text_collapses_beyond_200_nodes_by_default() -> None:
    assert len(to_text(chain_of(200)).splitlines()) == 1 + 200
    lines = to_text(chain_of(201)).splitlines()
    assert len(lines) == 1 + 200 + 1
    assert lines[101] == "... 1 more node ..."


def test_text_rejects_max_nodes_below_one() -> None:
    with pytest.raises(ValueError, match="max_nodes must be at least 1, got 0"):
        to_text(chain_graph(), max_nodes=0)


def test_text_of_an_empty_graph_is_its_headline() -> None:
    assert to_text(nx.DiGraph()) == "workflow (0 nodes)"


# -- shared labels --------------------------------------------------------------------


def test_long_arguments_and_results_are_cut_to_max_args_with_an_ellipsis() -> None:
    graph = nx.DiGraph()
    add(graph, 0, "tasks.put", "x" * 100, result="y" * 100)

    line = render(graph, max_args=10).splitlines()[1]

    assert line == "#0 tasks.put('xxxxxxxx…)   -> yyyyyyyyy…"


@pytest.mark.parametrize("fmt", ["text", "dot", "mermaid"])
def test_every_format_uses_the_same_truncated_label(fmt: str) -> None:
    graph = nx.DiGraph()
    add(graph, 0, "tasks.put", "x" * 100)

    assert "tasks.put('xxxxxxxx…)" in render(graph, fmt, max_args=10)
    assert "x" * 10 not in render(graph, fmt, max_args=10)


def test_unknown_format_names_the_supported_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown graph format 'png'; .*text, dot, mermaid, svg"):
        render(chain_graph(), "png")


# -- DOT ------------------------------------------------------------------------------

_DOT_NODE = re.compile(r'^  n(\d+) \[label="((?:[^"\\]|\\.)*)", (.*)\];$')
_DOT_EDGE = re.compile(r"^  n(\d+) -> n(\d+)(?: \[(.*)\])?;$")


def dot_nodes(source: str) -> dict[int, tuple[str, str]]:
    """Node number -> (label as Graphviz shows it, the other attributes)."""
    unescape = {"n": "\n", '"': '"', "\\": "\\"}
    nodes = {}
    for line in source.splitlines():
        if match := _DOT_NODE.match(line):
            label = re.sub(r"\\(.)", lambda m: unescape[m.group(1)], match.group(2))
            nodes[int(match.group(1))] = (label, match.group(3))
    return nodes


def dot_edges(source: str) -> dict[tuple[int, int], str]:
    """(source, target) -> the edge's attributes ("" when it has none)."""
    edges = {}
    for line in source.splitlines():
        if match := _DOT_EDGE.match(line):
            edges[(int(match.group(1)), int(match.group(2)))] = match.group(3) or ""
    return edges


def assert_well_formed(source: str) -> None:
    """Strings closed and braces balanced outside them, one graph, every line a statement."""
    depth, in_string, escaped = 0, False, False
    for char in source:
        if escaped:
            escaped = False
        elif in_string:
            escaped, in_string = char == "\\", char != '"'
        elif char == '"':
            in_string = True
        elif char in "{}":
            depth += 1 if char == "{" else -1
            assert depth >= 0, "closing brace before its opening one"
    assert not in_string and depth == 0
    lines = source.splitlines()
    assert lines[0] == "digraph workflow {" and lines[-1] == "}"
    for line in lines[1:-1]:
        assert line.startswith("  //") or line.endswith(";"), line


def test_dot_chord_has_every_node_and_edge() -> None:
    source = to_dot(chord_graph())

    assert_well_formed(source)
    assert "  rankdir=LR;" in source
    assert dot_nodes(source) == {
        0: ("tasks.add(2, 2)", "shape=box"),
        1: ("tasks.mul(..., 10)", "shape=box"),
        2: ("tasks.mul(..., 20)", "shape=box"),
        3: ("join[2]", "shape=diamond"),
        4: ("tasks.tsum(...)", "shape=box, peripheries=2"),
    }
    assert dot_edges(source) == {(0, 1): "", (0, 2): "", (1, 3): "", (2, 3): "", (3, 4): ""}


def test_dot_fills_nodes_by_state_and_puts_details_on_a_second_line() -> None:
    nodes = dot_nodes(to_dot(live_chord_graph()))

    assert nodes[0] == (
        "tasks.add(2, 2)\n[SUCCESS] id=0a2b3c4d -> 4",
        'shape=box, fillcolor="#a5d6a7", style="filled"',
    )
    assert 'fillcolor="#ef9a9a"' in nodes[2][1]  # FAILURE: red
    assert 'fillcolor="#f5f5f5"' in nodes[3][1]  # PENDING: white-grey


@pytest.mark.parametrize(
    ("state", "colour"),
    [("STARTED", "#fff59d"), ("RECEIVED", "#fff59d"), ("REVOKED", "#bdbdbd"), ("RETRY", "#ffcc80")],
)
def test_dot_colours_of_the_other_states(state: str, colour: str) -> None:
    graph = nx.DiGraph()
    add(graph, 0, "tasks.add", state=state)

    assert f'fillcolor="{colour}"' in to_dot(graph)


def test_dot_errbacks_are_dashed_and_after_edges_dotted() -> None:
    source = to_dot(errback_graph())

    assert_well_formed(source)
    assert dot_nodes(source)[2] == ("tasks.refund(7)", 'shape=box, style="dashed"')
    assert dot_edges(source) == {
        (0, 1): 'style=dotted, label="after"',
        (0, 2): 'style=dashed, label="on failure"',
    }


def test_dot_fanout_has_its_own_shape() -> None:
    assert dot_nodes(to_dot(fanout_graph(3)))[1] == (
        "fanout[3] tasks.fetch(..., timeout=5)",
        "shape=box3d",
    )


def test_dot_escapes_quotes_backslashes_and_newlines() -> None:
    graph = nx.DiGraph(root_id="r\noot")
    quoted = 'a "quoted" \\ word'
    add(graph, 0, "tasks.say\nit", quoted, result='"\\')
    source = to_dot(graph)

    assert_well_formed(source)
    assert r"tasks.say\nit('a \"quoted\" \\\\ word')" in source
    label, _ = dot_nodes(source)[0]
    assert label.splitlines() == ["tasks.say", f"it({quoted!r})", '-> "\\']
    assert "  // workflow r oot (1 node)" in source.splitlines()


# -- Mermaid --------------------------------------------------------------------------


def test_mermaid_chord_has_header_nodes_and_edges() -> None:
    assert to_mermaid(chord_graph()).splitlines() == [
        "flowchart LR",
        "  %% workflow (5 nodes, output: #4)",
        '  n0["tasks.add(2, 2)"]',
        '  n1["tasks.mul(..., 10)"]',
        '  n2["tasks.mul(..., 20)"]',
        '  n3{"join[2]"}',
        '  n4["tasks.tsum(...)"]',
        "  n0 --> n1",
        "  n0 --> n2",
        "  n1 --> n3",
        "  n2 --> n3",
        "  n3 --> n4",
        "  classDef output stroke-width:3px",
        "  class n4 output",
    ]


def test_mermaid_live_graph_has_a_class_per_state() -> None:
    lines = to_mermaid(live_chord_graph()).splitlines()

    assert '  n0["tasks.add(2, 2)<br>[SUCCESS] id=0a2b3c4d -#gt; 4"]' in lines
    assert lines[-8:] == [
        "  classDef success fill:#a5d6a7",
        "  class n0,n1 success",
        "  classDef failure fill:#ef9a9a",
        "  class n2 failure",
        "  classDef pending fill:#f5f5f5",
        "  class n3,n4 pending",
        "  classDef output stroke-width:3px",
        "  class n4 output",
    ]


def test_mermaid_errback_edges_are_dashed() -> None:
    lines = to_mermaid(errback_graph()).splitlines()

    assert "  n0 -->|after| n1" in lines
    assert "  n0 -.->|on failure| n2" in lines
    assert lines[-4:-2] == ["  classDef errback stroke-dasharray:4 3", "  class n2 errback"]


def test_mermaid_fanout_is_a_subroutine_box() -> None:
    assert '  n1[["fanout[?] tasks.fetch(..., timeout=5)"]]' in to_mermaid(fanout_graph())


def test_mermaid_escapes_quotes_and_markup() -> None:
    graph = nx.DiGraph()
    add(graph, 0, "tasks.say", '"<b>#quot;</b>" & `x`')

    line = to_mermaid(graph).splitlines()[2]

    assert line == (
        "  n0[\"tasks.say('#quot;#lt;b#gt;#35;quot;#lt;/b#gt;#quot; #amp; #96;x#96;')\"]"
    )


# -- scale and purity -----------------------------------------------------------------


@pytest.fixture(scope="module")
def huge_chain() -> nx.DiGraph:
    return chain_of(100_000)


def test_huge_chain_text_is_a_screenful(huge_chain: nx.DiGraph) -> None:
    lines = render(huge_chain).splitlines()

    assert len(lines) == 1 + 200 + 1
    assert lines[101] == "... 99800 more nodes ..."
    assert lines[-1] == "#99999 tasks.step(..., 99999)  <- #99998   [output]"


def test_huge_chain_dot_has_every_node_and_edge(huge_chain: nx.DiGraph) -> None:
    source = render(huge_chain, "dot")

    assert_well_formed(source)
    assert len(dot_nodes(source)) == 100_000
    assert len(dot_edges(source)) == 99_999


def test_huge_chain_mermaid_has_every_node_and_edge(huge_chain: nx.DiGraph) -> None:
    lines = render(huge_chain, "mermaid").splitlines()

    assert lines[0] == "flowchart LR"
    assert sum(" --> " in line for line in lines) == 99_999
    assert '  n99999["tasks.step(..., 99999)"]' in lines


def test_render_imports_no_broker_backend_or_runtime_code() -> None:
    heavy = ("kombu", "redis", "billiard.pool", "flowq.runtime")
    code = (
        "import sys, flowq.canvas.render\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({heavy!r}))\n"
        "assert not loaded, loaded\n"
    )
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True)
