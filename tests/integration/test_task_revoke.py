"""Revocation on real workers: queued, delayed, running (terminate), whole workflows,
and revocations made while no worker runs.

The module's worker has one process and a prefetch of one, so "a task waiting behind
a busy worker" is a fact of the setup, not a race.
"""

from __future__ import annotations

import signal
import time

import pytest

from flowq import states
from flowq.exceptions import TaskRevokedError
from tests.integration.app import app
from tests.integration.semantics_support import (
    T,
    kind,
    make_cluster,
    point_app_at_cluster,  # noqa: F401 - autouse
    pool_replaced,
    running,
    settle,
    wait_for,
    wait_state,
)
from tests.integration.semantics_tasks import labelled, long_sleep, stamp

pytestmark = pytest.mark.timeout(120)
GONE = (states.REVOKED, states.FAILURE)


@pytest.fixture(scope="module", params=["redis", "amqp"])
def cluster(request, tmp_path_factory):
    yield from running(request.param, tmp_path_factory, concurrency=1,
                       env={"FLOWQ_TEST_PREFETCH": "1"}, stop_timeout=5.0)


def test_revoked_while_waiting_behind_a_busy_worker_never_runs(cluster):
    busy, runs = kind(), kind()
    blocker = long_sleep.delay(busy, 1.5)
    settle(cluster, busy, 1, wait=0)
    waiting = stamp.delay(runs)
    waiting.revoke()
    assert blocker.get(timeout=T) == "woke up"
    wait_state(waiting, states.REVOKED)
    with pytest.raises(TaskRevokedError, match="revoked"):
        waiting.get(timeout=T)
    time.sleep(0.3)
    assert cluster.ledger_list(runs) == []


def test_a_task_revoked_long_before_its_eta_is_revoked_at_once(cluster):
    runs = kind()
    result = stamp.apply_async((runs,), countdown=600)
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=T)  # not in ten minutes
    wait_for(lambda: app.backend.delay_count() == 0, 10, "delay index not emptied")
    assert cluster.ledger_list(runs) == []


def test_revoked_delayed_task_never_runs(cluster):
    runs = kind()
    result = stamp.apply_async((runs,), countdown=1)
    result.revoke()
    wait_state(result, states.REVOKED)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=T)
    wait_for(lambda: app.backend.delay_count() == 0, 10, "delay index not emptied")
    assert cluster.ledger_list(runs) == []


@pytest.mark.parametrize("how", ["handle", "control"])
def test_revoking_a_running_workflow_stops_its_later_steps(cluster, how):
    busy, later = kind(), kind()
    workflow = (long_sleep.si(busy, 1.5) | labelled.si("second", later)
                | labelled.si("third", later))
    result = workflow.delay()
    settle(cluster, busy, 1, wait=0)  # the first step is running
    if how == "handle":
        result.revoke(workflow=True)
    else:
        app.control.revoke_workflow(result.parent.parent.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=T)  # raises, does not hang
    assert result.parent.state in GONE and result.state in GONE
    assert result.parent.parent.get(timeout=T) == "woke up"  # not terminated: it finished
    time.sleep(0.3)
    assert cluster.ledger_list(later) == []


def test_revoke_with_terminate_kills_the_running_task(cluster):
    """Last in the module: when terminate fails, the sleeper holds the only process."""
    runs = kind()
    result = long_sleep.delay(runs, 12)
    pid = int(settle(cluster, runs, 1, wait=0)[0])
    result.revoke(terminate=True)
    pool_replaced(cluster, {pid}, 1, timeout=8)  # killed at once, whatever reports it
    with pytest.raises(TaskRevokedError):
        result.get(timeout=15)
    assert result.state == states.REVOKED
    assert cluster.ledger_list(f"{runs}:ends") == []


def test_a_terminate_the_worker_did_not_hear_still_kills_the_task(cluster):
    """The broadcast is the fast path; a worker that missed it (reconnecting, say) reads
    the terminating revocation from the backend within a second and kills the task."""
    runs = kind()
    result = long_sleep.delay(runs, 12)
    pid = int(settle(cluster, runs, 1, wait=0)[0])
    app.backend.revoke_and_terminate([result.id], signal.SIGTERM, expires=60)  # no broadcast
    pool_replaced(cluster, {pid}, 1, timeout=8)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=15)
    assert cluster.ledger_list(f"{runs}:ends") == []


@pytest.mark.parametrize("config", ["redis", "amqp"])
def test_revocation_made_while_no_worker_runs_is_honoured(config, tmp_path_factory):
    """Revocations live in the result backend: a worker started later honours them."""
    cluster = make_cluster(config, tmp_path_factory)
    try:
        runs = kind()
        queued = stamp.delay(runs)
        delayed = stamp.apply_async((runs,), countdown=0.5)
        chain = (stamp.si(runs) | stamp.si(runs)).delay()
        for result in (queued, delayed):
            result.revoke()
        chain.revoke(workflow=True)
        cluster.start_named()
        for result in (queued, delayed, chain.parent):
            wait_state(result, states.REVOKED)
        with pytest.raises(TaskRevokedError):
            chain.get(timeout=T)
        assert stamp.delay(runs).get(timeout=T)  # the worker does run other tasks
        assert len(cluster.ledger_list(runs)) == 1
    finally:
        cluster.cleanup()
        app.close()
