"""Delivery semantics: acks_late with dying processes, crash loops, Reject and Ignore.

A named worker (3 prefork children, ``task_max_deliveries=2``) runs per configuration
for the whole module. The tasks kill their own pool process with SIGKILL (the ledger
tells them whether they already did), so "redelivered once", "failed with
WorkerLostError" and "dead-lettered after task_max_deliveries" are observed on real
processes and real brokers.

The pool reports a dead child only after its ``lost_worker_timeout`` (1 s), so
the three dying tasks are sent together when the module starts and the quick tests run
while the worker waits to notice them.
"""

from __future__ import annotations

import pytest

from flowq import states
from flowq.exceptions import WorkerLostError
from tests.integration.semantics_support import (
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    pool_replaced,
    running,
    settle,
)
from tests.integration.semantics_tasks import (
    die_always,
    die_once,
    die_once_unprotected,
    ignored,
    reject_first,
)

pytestmark = pytest.mark.timeout(120)
MAX_DELIVERIES = 2
CONCURRENCY = 3


@pytest.fixture(scope="module", params=["redis", "amqp"])
def cluster(request, tmp_path_factory):
    yield from running(request.param, tmp_path_factory, concurrency=CONCURRENCY,
                       env={"FLOWQ_TEST_MAX_DELIVERIES": str(MAX_DELIVERIES)})


@pytest.fixture(scope="module", autouse=True)
def dying(cluster):
    """The three self-killing tasks, sent at once when the module's worker starts."""
    runs = {name: kind() for name in ("once", "unprotected", "always")}
    results = {"once": die_once.delay(runs["once"]),
               "unprotected": die_once_unprotected.delay(runs["unprotected"]),
               "always": die_always.delay(runs["always"])}
    return {name: (results[name], runs[name]) for name in runs}


def test_reject_without_requeue_dead_letters_the_message(cluster):
    runs = kind()
    result = reject_first.delay(runs, False)
    headers = cluster.dead_letter(result.id)
    assert "not now" in headers["x-flowq-reason"]
    assert settle(cluster, runs, 1) == [result.id]  # never run again
    assert result.state == states.PENDING


def test_reject_with_requeue_runs_the_task_again(cluster):
    runs = kind()
    result = reject_first.delay(runs, True)
    assert result.get(timeout=T) == "second delivery"
    assert settle(cluster, runs, 2) == [result.id, result.id]


def test_ignore_leaves_the_state_as_it_was(cluster):
    runs = kind()
    result = ignored.delay(runs)
    assert settle(cluster, runs, 1) == [result.id]
    assert result.state == states.PENDING


def test_late_ack_task_killing_its_process_is_redelivered_and_succeeds(cluster, dying):
    """A1/A2: acks_late + reject_on_worker_lost: 2 starts, 1 end, one SUCCESS, and the
    killed child is replaced."""
    result, runs = dying["once"]
    assert result.get(timeout=T) == "survived"
    assert settle(cluster, f"{runs}:starts", 2) == [result.id, result.id]
    assert cluster.ledger_list(f"{runs}:ends") == [result.id]
    pool_replaced(cluster, {int(pid) for pid in cluster.ledger_list(f"{runs}:pids")},
                  CONCURRENCY)


def test_without_reject_on_worker_lost_the_task_fails_with_worker_lost(cluster, dying):
    result, runs = dying["unprotected"]
    with pytest.raises(WorkerLostError):
        result.get(timeout=T)
    assert result.state == states.FAILURE
    assert settle(cluster, f"{runs}:starts", 1) == [result.id]  # not run again
    assert cluster.ledger_list(f"{runs}:ends") == []


def test_crash_loop_stops_after_task_max_deliveries_and_is_dead_lettered(cluster, dying):
    """A6: a task that always kills its process fails after task_max_deliveries
    deliveries and its message lands in ``<queue>.dead``; nothing loops."""
    result, runs = dying["always"]
    with pytest.raises(WorkerLostError, match="task_max_deliveries"):
        result.get(timeout=T)
    assert result.state == states.FAILURE
    assert settle(cluster, runs, MAX_DELIVERIES, wait=1.0) == [result.id] * MAX_DELIVERIES
    headers = cluster.dead_letter(result.id)
    assert headers["task"] == die_always.name
    assert "WorkerLostError" in headers["x-flowq-reason"]
