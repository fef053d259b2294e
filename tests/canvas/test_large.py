"""A chain of 100,000 steps: no RecursionError anywhere, from building to running it."""

from __future__ import annotations

import sys

import pytest

from flowq import Flowq, chain
from flowq.canvas import wire
from flowq.canvas.render import render

from .tasks import add

STEPS = 100_000


@pytest.fixture(scope="module")
def long_chain():
    return chain(add.s(0, 0), *(add.s(1) for _ in range(STEPS - 1)))


@pytest.mark.timeout(60)
def test_a_100k_step_chain_builds_compiles_encodes_draws_and_runs(app: Flowq,
                                                                   long_chain) -> None:
    assert sys.getrecursionlimit() <= 10_000  # nothing here may rely on a raised limit
    assert len(long_chain.tasks) == STEPS
    assert (long_chain | add.s(1)).tasks[-1] == add.s(1)

    workflow = app.compile(long_chain)
    assert len(workflow) == STEPS and workflow.output == STEPS - 1

    text = wire.dumps(workflow)
    assert wire.loads(text) == workflow
    del text

    graph = long_chain.graph()
    assert graph.number_of_nodes() == STEPS
    drawn = render(graph, "text", max_args=20)
    assert drawn.startswith(f"workflow ({STEPS} nodes, output: #{STEPS - 1})")
    del graph, drawn  # a 100k-node graph alive makes every later GC pass slow

    result = long_chain.apply()
    assert result.get(timeout=10) == STEPS - 1


@pytest.mark.timeout(60)
def test_a_100k_step_chain_built_with_pipe_in_a_loop(app: Flowq, long_chain) -> None:
    # Given: a | b | c | ... one step at a time, as a loop building a workflow would
    steps = [add.s(0, 0), *(add.s(1) for _ in range(STEPS - 1))]
    piped = steps[0]
    for step in steps[1:]:
        piped = piped | step  # shares the steps so far: O(1), not a copy of them

    # Then: the same value as the chain built in one call (whose every stage is tested
    # above), and it compiles
    assert len(piped.tasks) == STEPS and piped == long_chain and hash(piped) == hash(long_chain)
    workflow = app.compile(piped)
    assert len(workflow) == STEPS and workflow.output == STEPS - 1
