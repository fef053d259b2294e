"""Property tests over random nested canvases of deterministic arithmetic tasks.

A canvas is drawn as a small abstract tree (``Leaf``/``Seq``/``Par``/``Join``/``Fan``, any
part possibly wrapped in ``Opts`` (call options), ``Partial`` (partial arguments) or
``Guard`` (an errback)), built into flowq's canvas in one of the ways a user could write
it (``|`` or ``chain()``, ``group(...)`` or ``group([...])``, ``chord(h, b)`` or
``group | body``), and then:

* its wire encoding round-trips to an equal workflow (and to the same bytes);
* its graph is acyclic with the node count the tree predicts;
* its eager result equals :func:`evaluate`, a reference evaluator written from the
  documented semantics, not from flowq's code.
"""

from __future__ import annotations

import functools
import operator
from typing import Any

import attrs
import networkx as nx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowq import chain, chord, group
from flowq.canvas import compile_workflow, fanout, wire

from .tasks import errback, step, step_value

# -- the abstract tree -----------------------------------------------------------------------


@attrs.frozen
class Leaf:
    k: int
    immutable: bool = False


@attrs.frozen
class Seq:  # a chain
    steps: tuple[Tree, ...]


@attrs.frozen
class Par:  # a group
    members: tuple[Tree, ...]


@attrs.frozen
class Join:  # a chord
    header: tuple[Tree, ...]
    body: Tree


@attrs.frozen
class Fan:  # a group whose list of results a fanout of step(k) runs over
    members: tuple[Tree, ...]
    k: int


@attrs.frozen
class Opts:  # call options: they change where and how, never what
    inner: Tree
    options: tuple[tuple[str, Any], ...]


@attrs.frozen
class Partial:  # partial arguments, given to the steps that run first
    inner: Tree
    args: tuple[int, ...]


@attrs.frozen
class Guard:  # an errback for the part (never started: these tasks do not fail)
    inner: Tree


Tree = Leaf | Seq | Par | Join | Fan | Opts | Partial | Guard

NOTHING = object()


def evaluate(tree: Tree, parent: Any = NOTHING, extra: tuple[int, ...] = ()) -> Any:
    """The documented semantics: a step receives its parent's result first (unless
    immutable), then partial arguments (``extra``, which reach a part's first steps),
    then its own; a group gives every member the parent's result and is the list of
    their results; a chord's body receives the list of its header's results; a fanout
    runs its task once per item of its input's list."""
    if isinstance(tree, Leaf):
        incoming = () if parent is NOTHING else (parent,)
        return step_value(tree.k) if tree.immutable else step_value(tree.k, *incoming, *extra)
    if isinstance(tree, Seq):
        value = evaluate(tree.steps[0], parent, extra)
        for child in tree.steps[1:]:
            value = evaluate(child, value)
        return value
    if isinstance(tree, Par):
        return [evaluate(member, parent, extra) for member in tree.members]
    if isinstance(tree, Join):
        return evaluate(tree.body, [evaluate(member, parent, extra) for member in tree.header])
    if isinstance(tree, Fan):
        return [step_value(tree.k, evaluate(member, parent, extra)) for member in tree.members]
    if isinstance(tree, Partial):
        return evaluate(tree.inner, parent, extra + tree.args)
    return evaluate(tree.inner, parent, extra)  # Opts, Guard


def node_count(tree: Tree) -> int:
    """Tasks are one node each; every group or chord adds one join; an errback adds its
    own node; options and partial arguments add nothing."""
    if isinstance(tree, Leaf):
        return 1
    if isinstance(tree, Seq):
        return sum(node_count(child) for child in tree.steps)
    if isinstance(tree, Par):
        return 1 + sum(node_count(member) for member in tree.members)
    if isinstance(tree, Join):
        return 1 + sum(node_count(member) for member in tree.header) + node_count(tree.body)
    if isinstance(tree, Fan):
        return 2 + sum(node_count(member) for member in tree.members)
    return node_count(tree.inner) + (1 if isinstance(tree, Guard) else 0)


def build(tree: Tree, style: int) -> Any:
    """The flowq canvas for ``tree``; ``style`` picks between equivalent spellings."""
    if isinstance(tree, Leaf):
        return step.si(tree.k) if tree.immutable else step.s(tree.k)
    if isinstance(tree, Opts):
        return build(tree.inner, style).set(**dict(tree.options))
    if isinstance(tree, Partial):
        return build(tree.inner, style).clone(tree.args)
    if isinstance(tree, Guard):
        return build(tree.inner, style).on_error(errback.s())
    if isinstance(tree, Fan):
        members = group([build(member, style) for member in tree.members])
        spread = fanout(step.s(tree.k))
        return (members | spread, chord(members, spread), chain(members, spread))[style % 3]
    if isinstance(tree, Seq):
        steps = [build(child, style) for child in tree.steps]
        if style % 2 and len(steps) > 1:
            return functools.reduce(operator.or_, steps)
        return chain(*steps)
    if isinstance(tree, Par):
        members = [build(member, style) for member in tree.members]
        return group(members) if style % 3 else group(*members)
    header = [build(member, style) for member in tree.header]
    body = build(tree.body, style)
    return group(header) | body if style % 5 == 1 else chord(header, body)


#: Options a part may carry; none changes a result.
part_options = st.lists(st.sampled_from([
    ("queue", "a"), ("queue", "b"), ("priority", 0), ("priority", 7), ("routing_key", "rk"),
    ("headers", {"trace": [1, "x"]}), ("retry", False),
]), min_size=1, max_size=3).map(lambda pairs: tuple(dict(pairs).items()))


@st.composite
def trees(draw: st.DrawFn, depth: int = 4, budget: list[int] | None = None) -> Tree:
    """Nested up to ``depth`` levels, about 30 leaves at most; any part may be wrapped in
    options, partial arguments or an errback."""
    budget = [30] if budget is None else budget
    tree = _shape(draw, depth, budget)
    wrapper = draw(st.sampled_from(["none"] * 5 + ["opts", "partial", "guard"]))
    if wrapper == "opts":
        return Opts(tree, draw(part_options))
    if wrapper == "partial":
        return Partial(tree, tuple(draw(st.lists(st.integers(0, 9), min_size=1, max_size=2))))
    return Guard(tree) if wrapper == "guard" else tree


def _shape(draw: st.DrawFn, depth: int, budget: list[int]) -> Tree:
    if depth == 0 or budget[0] <= 1 or draw(st.integers(0, 3)) == 0:
        budget[0] -= 1
        return Leaf(draw(st.integers(0, 99)), draw(st.booleans()))
    kind = draw(st.sampled_from(["seq", "par", "join", "fan"]))
    sub = trees(depth - 1, budget)
    if kind == "seq":
        return Seq(tuple(draw(st.lists(sub, min_size=1, max_size=4))))
    if kind == "par":
        return Par(tuple(draw(st.lists(sub, min_size=0, max_size=4))))
    if kind == "fan":
        return Fan(tuple(draw(st.lists(sub, min_size=0, max_size=3))), draw(st.integers(0, 99)))
    return Join(tuple(draw(st.lists(sub, min_size=0, max_size=4))), draw(sub))


styles = st.integers(0, 29)
QUICK = settings(deadline=None, max_examples=300,
                 suppress_health_check=[HealthCheck.too_slow])


@QUICK
@given(trees(), styles, st.one_of(st.none(), st.integers(0, 9)))
def test_eager_result_equals_the_reference_evaluator(tree: Tree, style: int,
                                                     partial: int | None) -> None:
    canvas = build(tree, style)
    if partial is None:
        expected, args = evaluate(tree), None
    else:  # partial arguments reach the first steps exactly as a parent's result would
        expected, args = evaluate(tree, partial), (partial,)
    assert canvas.apply(args=args).get(timeout=10) == expected


@QUICK
@given(trees(), styles)
def test_graph_is_acyclic_with_the_expected_node_count(tree: Tree, style: int) -> None:
    graph = build(tree, style).graph()
    assert nx.is_directed_acyclic_graph(graph)
    assert graph.number_of_nodes() == node_count(tree)
    paths = [data["path"] for _, data in graph.nodes(data=True)]
    assert len(set(paths)) == len(paths)


options = st.fixed_dictionaries({}, optional={
    "queue": st.sampled_from(["a", "b"]),
    "routing_key": st.sampled_from(["", "rk"]),
    "ignore_result": st.booleans(),
    "retry_policy": st.sampled_from([{"max_retries": 3}, {"max_retries": None,
                                                          "interval_start": 0.5}]),
    "priority": st.integers(0, 9),
    "countdown": st.sampled_from([1, 1.0, 2.5]),
    "headers": st.dictionaries(st.sampled_from(["x", "y"]),
                               st.sampled_from([1, True, 1.0, "1", None, [1, "a"]]),
                               max_size=2),
})


@QUICK
@given(trees(), styles, st.data())
def test_wire_round_trips_to_an_equal_workflow(tree: Tree, style: int,
                                               data: st.DataObject) -> None:
    canvas = build(tree, style)
    canvas = canvas.set(**data.draw(options))
    if data.draw(st.booleans()):
        canvas = canvas.on_error(errback.s())
    workflow = compile_workflow(canvas, options=data.draw(options))
    text = wire.dumps(workflow)
    decoded = wire.loads(text)
    assert decoded == workflow
    assert wire.dumps(decoded) == text
    assert decoded.ids() == workflow.ids()
