"""Tracking against a real worker: recent workflows with their progress, and stuck ones.

One worker on Redis (broker, backend and ledger in db 3) consumes the cluster's queue; a
second queue of the cluster's (``<queue>-lonely``) has no consumer, so a step routed there
waits in it until the test deletes it: the workflow is then stuck for real.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner

from flowq import chain, chord, group, states
from flowq.cli import main
from flowq.runtime import stuck, tracking
from tests.integration.app import add, app, fail, sleep, tsum
from tests.integration.harness import Cluster, require_server, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    require_server("Redis", 6379)
    instance = Cluster("redis3", tmp_path_factory.mktemp("tracking"))
    instance.configure(app)
    instance.start_worker(concurrency=2)
    yield instance
    instance.cleanup()
    app.close()


def tracked(root_id: str) -> tracking.Tracked:
    found = tracking.find(app.backend, root_id)
    assert found is not None, f"{root_id} is not tracked"
    return found


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-A", "tests.integration.app:app", *args])
    return result.exit_code, result.output


def root_of(handle: Any) -> str:
    """The root id of the workflow ``handle`` belongs to (its first node's id)."""
    return str(handle.root_id)


def test_a_finished_chord_is_listed_with_every_node_done(cluster: Cluster) -> None:
    handle = chord([add.s(i, i) for i in range(5)], tsum.s()).delay()
    assert handle.get(timeout=30) == 20
    root_id = root_of(handle)
    entry = wait_for(lambda: tracked(root_id).finished and tracked(root_id), 10,
                     "the chord's last node to be counted")
    assert (entry.shape, entry.first, entry.state) == ("chord", add.name, states.SUCCESS)
    assert (entry.done, entry.total, entry.failed) == (7, 7, 0)  # 5 parts, join, body
    code, output = cli("workflows", "--json")
    assert code == 0
    listed = [json.loads(line) for line in output.splitlines()]
    assert {"root_id": root_id, "state": "SUCCESS", "done": 7, "total": 7} in [
        {k: doc[k] for k in ("root_id", "state", "done", "total")} for doc in listed]


def test_a_failure_counts_the_failed_node_and_everything_after_it(cluster: Cluster) -> None:
    handle = chain(add.s(1, 1), fail.s(), add.s(1), add.s(2)).delay()
    with pytest.raises(ValueError):
        handle.get(timeout=30)
    entry = wait_for(lambda: tracked(root_of(handle)).finished and tracked(root_of(handle)),
                     10, "the failed chain to be counted")
    assert entry.state == states.FAILURE
    assert dict(entry.progress.counts) == {states.SUCCESS: 1, states.FAILURE: 3}
    code, output = cli("workflows")
    assert code == 0
    assert f"{root_of(handle)}  FAILURE  4/4, 3 failed  chain of {add.name}" in output


def test_errbacks_do_not_count_among_the_nodes_that_run(cluster: Cluster) -> None:
    handle = chain(add.s(1, 1), add.s(1)).on_error(add.si(0, 0)).delay()
    assert handle.get(timeout=30) == 3
    entry = wait_for(lambda: tracked(root_of(handle)).finished and tracked(root_of(handle)),
                     10, "the chain to be counted")
    assert (entry.done, entry.total, entry.state) == (2, 2, states.SUCCESS)


def test_only_the_workflow_whose_next_step_was_lost_is_stuck(cluster: Cluster) -> None:
    lonely, waiting = f"{cluster.queue}-lonely", f"{cluster.queue}-waiting"
    # Given a workflow whose chord body goes to a queue nobody consumes, and whose body
    # message the test then deletes: nothing will ever run it
    lost = chain(add.s(1, 1), chord([add.s(1), add.s(2)], tsum.s().set(queue=lonely))).delay()
    # and three that are slow but not stuck: one running, one delayed, one queued
    running = chain(add.s(1, 1), sleep.si(8)).delay()
    delayed = chain(add.s(1, 1), add.s(3).set(countdown=3600)).delay()
    queued = chain(add.s(1, 1), add.s(4).set(queue=waiting)).delay()
    roots = {name: root_of(handle) for name, handle in
             (("lost", lost), ("running", running), ("delayed", delayed), ("queued", queued))}
    wait_for(lambda: tracked(roots["lost"]).done == 4, 20, "the lost chord's join")
    for name in ("running", "delayed", "queued"):
        wait_for(lambda name=name: tracked(roots[name]).done == 1, 20, f"{name}'s first step")
    wait_for(lambda: app.control.queue_sizes([lonely])[lonely] == 1, 10, "the body's message")
    assert app.control.purge([lonely]) == 1
    time.sleep(1.2)  # every one of them now idle for longer than --for 1s

    found = stuck.find(app, idle=1.0, limit=20)

    assert [item.tracked.root_id for item in found] == [roots["lost"]]
    (waiting_node,) = found[0].waiting
    assert (waiting_node.path, waiting_node.task, waiting_node.queue) == (
        "chain[1].chord.body", tsum.name, lonely)
    code, output = cli("workflows", "--stuck", "--for", "1s")
    assert code == 1
    assert f"waiting: chain[1].chord.body ({tsum.name})" in output
    assert all(roots[name] not in output for name in ("running", "delayed", "queued"))
    # a longer --for: not idle that long yet
    assert cli("workflows", "--stuck", "--for", "10m")[0] == 0
    app.control.revoke(roots["running"], terminate=True)


def test_for_goes_with_stuck_and_reads_durations(cluster: Cluster) -> None:
    code, output = cli("workflows", "--for", "5m")
    assert code == 2 and "--for goes with --stuck" in output
    code, output = cli("workflows", "--stuck", "--for", "soon")
    assert code == 2 and "'soon' is not a duration" in output


def test_groups_are_tracked_too(cluster: Cluster) -> None:
    handle = group(add.s(i, 1) for i in range(3)).delay()
    assert handle.get(timeout=30) == [1, 2, 3]
    entry = wait_for(lambda: tracked(root_of(handle)).finished and tracked(root_of(handle)),
                     10, "the group's join")
    assert (entry.shape, entry.done, entry.total) == ("group", 4, 4)
