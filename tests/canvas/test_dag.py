"""The DAG: what a canvas compiles to, and its graph view."""

from __future__ import annotations

import networkx as nx
import pytest

from flowq import Flowq, chain, chord, group
from flowq.canvas import compile_workflow, fanout
from flowq.canvas import ids as canvas_ids
from flowq.canvas.dag import MAX_NESTING
from flowq.canvas.graph import to_graph
from flowq.exceptions import InvalidWorkflow

from .tasks import add, errback, mul, numbers, process, tsum

SHAPES = [
    pytest.param(lambda: add.s(1, 1), 1, id="task"),
    pytest.param(lambda: chain(add.s(0, 0), *(add.s(i) for i in range(6))), 7, id="chain-of-7"),
    pytest.param(lambda: group(add.s(i, i) for i in range(5)), 6, id="group-of-5"),
    pytest.param(lambda: group(add.s(1, 1)), 2, id="group-of-1"),
    pytest.param(lambda: group([]), 1, id="empty-group"),
    pytest.param(lambda: chord([add.s(i, i) for i in range(4)], tsum.s()), 6, id="chord-of-4"),
    pytest.param(lambda: chord([], tsum.s()), 2, id="empty-chord"),
    pytest.param(lambda: add.s(1, 1) | chord([add.s(1), add.s(2)], tsum.s()) | add.s(1), 6,
                 id="chord-in-chain"),
    pytest.param(lambda: group(add.s(1, 1) | add.s(1), add.s(2, 2) | add.s(2)), 5,
                 id="chains-in-group"),
    pytest.param(lambda: group(group(add.s(1, 1), add.s(2, 2)), add.s(3, 3)), 5,
                 id="group-in-group"),
    pytest.param(lambda: chord([chord([add.s(1, 1)], tsum.s()), add.s(2, 2)], tsum.s()), 6,
                 id="chord-in-chord-header"),
    pytest.param(lambda: chord([add.s(1, 1)], tsum.s() | add.s(1)), 4, id="chain-body"),
    pytest.param(lambda: chord([add.s(1, 1)], group(tsum.s(), tsum.s())), 5, id="group-body"),
    pytest.param(lambda: numbers.s(3) | fanout(process.s()) | tsum.s(), 3, id="fanout"),
    pytest.param(lambda: (add.s(1, 1) | add.s(1)).on_error(errback.s()), 3, id="errback"),
    pytest.param(lambda: add.s(1, 1).link(add.s(1)), 2, id="link"),
]


@pytest.mark.parametrize(("build", "count"), SHAPES)
def test_graph_is_an_acyclic_digraph_with_the_expected_node_count(build, count) -> None:
    graph = build().graph()
    assert isinstance(graph, nx.DiGraph)
    assert nx.is_directed_acyclic_graph(graph)
    assert graph.number_of_nodes() == count


@pytest.mark.parametrize(("build", "count"), SHAPES)
def test_node_ids_are_unique_and_known_before_sending(app: Flowq, build, count) -> None:
    workflow = app.compile(build())
    ids = workflow.ids()
    assert len(ids) == len(set(ids)) == count
    graph = to_graph(workflow)
    assert [graph.nodes[n]["id"] for n in graph] == ids
    assert graph.graph["root_id"] == workflow.seed == ids[0]


def test_nodes_carry_name_args_kwargs_options_kind_and_path() -> None:
    c = add.s(1, 1) | chord([add.s(1).set(queue="q"), mul.s(y=2)], tsum.s())
    graph = c.graph()
    nodes = [graph.nodes[n] for n in sorted(graph)]
    assert [(n["kind"], n["task"], n["path"]) for n in nodes] == [
        ("task", add.name, "chain[0]"),
        ("task", add.name, "chain[1].chord.header[0]"),
        ("task", mul.name, "chain[1].chord.header[1]"),
        ("join", None, "chain[1]"),
        ("task", tsum.name, "chain[1].chord.body"),
    ]
    assert nodes[0]["args"] == (1, 1)
    assert nodes[1]["options"] == {"queue": "q"}
    assert nodes[2]["kwargs"] == {"y": 2}
    assert graph.graph["output"] == 4


def test_edges_say_how_values_flow() -> None:
    c = (add.s(1, 1) | add.si(2, 2) | group(add.s(1), add.s(2))).on_error(errback.s())
    graph = c.graph()
    flows = {(a, b): data["flow"] for a, b, data in graph.edges(data=True)}
    assert flows[(0, 1)] == "after"  # immutable: waits, value not passed
    assert flows[(1, 2)] == flows[(1, 3)] == "result"
    assert flows[(2, 4)] == flows[(3, 4)] == "member"
    assert graph.edges[3, 4]["index"] == 1
    assert [b for (a, b), flow in flows.items() if flow == "errback"] == [5, 5, 5, 5]
    assert graph.nodes[5]["deferred"] is True


def test_ids_are_derived_from_the_seed_and_the_position() -> None:
    c = chain(add.s(1, 1), add.s(2), add.s(3))
    first = compile_workflow(c, seed="seed-a")
    again = compile_workflow(c, seed="seed-a")
    other = compile_workflow(c, seed="seed-b")
    assert first.ids() == again.ids()
    assert first.ids()[0] == "seed-a"
    assert first.ids()[1:] == [canvas_ids.derive("seed-a", 1), canvas_ids.derive("seed-a", 2)]
    assert set(first.ids()).isdisjoint(other.ids())


def test_an_explicit_task_id_on_the_first_step_is_the_seed() -> None:
    workflow = compile_workflow(chain(add.s(1, 1).set(task_id="first"), add.s(2)))
    assert workflow.seed == "first"
    assert workflow.ids() == ["first", canvas_ids.derive("first", 1)]


def test_nodes_are_in_topological_order() -> None:
    c = group(chord([add.s(1, 1), add.s(2, 2)], tsum.s() | add.s(1)), add.s(3, 3) | mul.s(2))
    workflow = compile_workflow(c)
    for position, node in enumerate(workflow.nodes):
        assert node.input is None or node.input < position
        assert all(member < position for member in node.members)


def test_errback_scopes_cover_the_part_they_were_given_to() -> None:
    c = chain(add.s(1, 1), (add.s(1) | add.s(2)).on_error(errback.s("inner")), add.s(3))
    workflow = compile_workflow(c, options={"link_error": errback.s("outer")})
    inner, outer = sorted(workflow.scopes, key=lambda s: s.hi - s.lo)
    assert (inner.lo, inner.hi) == (1, 3)
    assert (outer.lo, outer.hi) == (0, 4)
    assert [workflow.nodes[i].args for i in inner.errbacks] == [("inner",)]
    assert [workflow.nodes[i].args for i in outer.errbacks] == [("outer",)]
    assert workflow.scopes_of(2) == [inner, outer]
    assert workflow.scopes_of(3) == [outer]
    assert workflow.entries() == [0]  # errbacks are deferred: started by a failure only


def test_nesting_deeper_than_the_limit_is_rejected_not_a_recursion_error() -> None:
    canvas = add.s(1, 1)
    for _ in range(MAX_NESTING + 5):
        canvas = group(canvas)
    with pytest.raises(InvalidWorkflow, match=rf"canvas nested deeper than {MAX_NESTING} "
                                              r"levels"):
        compile_workflow(canvas)


def test_an_empty_chain_is_rejected() -> None:
    with pytest.raises(InvalidWorkflow, match=r"^invalid workflow: chain: chain has no steps$"):
        compile_workflow(chain())
