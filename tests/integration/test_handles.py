"""Every result handle knows its workflow: ``root_id``, ``workflow()``, and ``flowq graph``
given the id of any node (on a real worker, Redis database 14)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flowq import AsyncResult, GroupResult, chord, fanout, states
from flowq.canvas import ids
from flowq.exceptions import WorkflowNotFound
from tests.integration import app as tasks
from tests.integration import observe_tasks
from tests.integration.app import app
from tests.integration.harness import ROOT, Cluster

pytestmark = pytest.mark.timeout(90)


def flowq(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowq", "-A", "tests.integration.app:app",
                           *args], cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                          timeout=60, check=False)


def test_every_handle_of_a_chain_with_a_chord_knows_the_root(db14: Cluster) -> None:
    # Given a chain whose middle is a chord: step, (two members | body)
    result = (tasks.add.s(1, 1) | chord([tasks.add.s(1), tasks.add.s(2)], tasks.tsum.s())
              ).delay()
    header = result.parent
    first = header.parent
    root = first.id
    assert isinstance(header, GroupResult)
    # Then the handles a send returns know it without asking the backend...
    assert [result.root_id, header.root_id, first.root_id] == [root] * 3
    assert all(member.root_id == root for member in header.results)
    assert result.get(timeout=30) == 7
    # ...and handles rebuilt from a bare id read it from the index, for any node
    for node_id in (result.id, header.id, header.results[1].id, root):
        assert AsyncResult(node_id, app=app).root_id == root
    assert GroupResult(header.id, [], app=app).root_id == root
    # And the workflow found from any node is the whole one, finished
    flow = app.workflow(header.results[0].id)
    assert flow.root_id == root and len(flow.dag) == 5
    assert flow.dag.ids()[flow.dag.output] == result.id
    assert flow.state == states.SUCCESS and flow.ready()
    progress = flow.progress()
    assert (progress.total, progress.succeeded, progress.failed) == (4, 4, 0)
    assert result.workflow().root_id == root
    assert flow.result().get(timeout=5) == 7


def test_flowq_graph_draws_the_whole_workflow_from_its_last_step(db14: Cluster) -> None:
    result = (tasks.add.s(2, 2) | tasks.mul.s(10) | tasks.add.s(1)).delay()
    assert result.get(timeout=30) == 41
    done = flowq(db14, "graph", result.id, "-t", "0")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"workflow {result.root_id[:8]} (3 nodes, output: #2)"
    assert [line.count("[SUCCESS]") for line in lines[1:]] == [1, 1, 1]
    assert "-> 41" in lines[3]


def test_a_fanout_item_leads_to_its_workflow(db14: Cluster) -> None:
    result = (tasks.make_list.s(3) | fanout(tasks.square.s()) | tasks.tsum.s()).delay()
    assert result.get(timeout=30) == 5
    fanout_id = result.parent.id
    item = ids.fanout_item_id(fanout_id, 2)
    assert AsyncResult(item, app=app).state == states.SUCCESS
    assert AsyncResult(item, app=app).root_id == result.root_id
    assert app.workflow(item).progress().total == 1 + 3 + 1  # make_list, 3 items, tsum
    drawn = flowq(db14, "graph", item, "-t", "0")
    assert drawn.returncode == 0, drawn.stderr
    assert "fanout[3]" in drawn.stdout and drawn.stdout.count("[SUCCESS]") == 3


def test_a_lone_task_is_its_own_root_and_has_no_workflow(db14: Cluster) -> None:
    single = tasks.add.delay(1, 2)
    assert single.get(timeout=30) == 3
    assert single.root_id == single.id
    assert AsyncResult(single.id, app=app).root_id == single.id
    with pytest.raises(WorkflowNotFound, match=f"task {single.id} is SUCCESS, but no "
                                               f"workflow is stored for it"):
        single.workflow()
    with pytest.raises(WorkflowNotFound, match="nothing is known about no-such-id"):
        app.workflow("no-such-id")


def test_a_workflow_sent_from_inside_a_task_has_the_caller_s_root(db14: Cluster) -> None:
    outer = (tasks.add.s(0, 0) | observe_tasks.sends_a_chain.si()).delay()
    seen = outer.get(timeout=30)
    assert seen == {"handle_root": outer.root_id, "own_root": outer.root_id}
