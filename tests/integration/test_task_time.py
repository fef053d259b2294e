"""Time limits on real prefork workers: hard limits kill and replace the child, soft
limits raise SoftTimeLimitExceeded inside the task, set per task, per call, per worker
or at run time through remote control; a soft limit above the hard one is refused.
"""

from __future__ import annotations

import re

import pytest

from flowq.exceptions import ConfigurationError, InvalidWorkflow, TimeLimitExceeded
from tests.integration.app import add, app
from tests.integration.semantics_support import (
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    pool_replaced,
    running,
    settle,
    wait_for,
)
from tests.integration.semantics_tasks import (
    hard_limited,
    limited_two_seconds,
    sleeper,
    soft_limited,
    stubborn,
)

pytestmark = pytest.mark.timeout(120)
#: how long a result decided by a 0.5-2 s time limit may take to arrive
LIMIT_WAIT = 10


#: Workers of this module are stopped quickly, to keep it fast.
STOP_TIMEOUT = 5.0


@pytest.fixture(scope="module", params=["redis", "amqp"])
def cluster(request, tmp_path_factory):
    yield from running(request.param, tmp_path_factory, stop_timeout=STOP_TIMEOUT)


def hard_limit_line(task_name: str, task_id: str, seconds: float) -> re.Pattern[str]:
    """The worker's log line for a hard time limit, naming the task and the limit."""
    limit = f"{seconds:g}(?:\\.0)?"
    return re.compile(f"Hard time limit \\({limit}s\\) exceeded for "
                      f"{re.escape(task_name)}\\[{re.escape(task_id)}\\]")


def test_soft_limit_above_hard_limit_is_refused(cluster):
    with pytest.raises(ConfigurationError, match="soft_time_limit"):
        app.task(soft_time_limit=5, time_limit=1, name="semantics.never_registered")(
            lambda: None)
    assert "semantics.never_registered" not in app.tasks
    with pytest.raises(InvalidWorkflow, match="soft_time_limit"):
        sleeper.apply_async((kind(), 1), soft_time_limit=5, time_limit=1)
    replies = app.control.time_limit(sleeper.name, soft=5, hard=1,
                                     destination=[cluster.hostname], reply=True)
    assert "error" in replies[0][cluster.hostname]


def test_soft_limit_above_the_tasks_declared_hard_limit_is_refused(cluster):
    with pytest.raises(InvalidWorkflow, match="soft_time_limit"):
        limited_two_seconds.apply_async(soft_time_limit=5)


def test_soft_time_limit_is_catchable(cluster):
    assert soft_limited.delay(kind()).get(timeout=LIMIT_WAIT) == "cleaned up"


def test_soft_time_limit_per_call(cluster):
    result = sleeper.apply_async((kind(), 30), soft_time_limit=0.5, time_limit=10)
    assert result.get(timeout=LIMIT_WAIT) == "cleaned up"


def test_time_limit_changed_at_run_time(cluster):
    """``app.control.time_limit`` gives a task limits in a running worker."""
    try:
        replies = app.control.time_limit(sleeper.name, soft=0.5, hard=10,
                                         destination=[cluster.hostname], reply=True)
        assert replies == [{cluster.hostname: {"ok": f"time limits of {sleeper.name} set to "
                                                     f"soft=0.5 hard=10"}}]
        assert sleeper.delay(kind(), 30).get(timeout=LIMIT_WAIT) == "cleaned up"
    finally:
        app.control.time_limit(sleeper.name, destination=[cluster.hostname], reply=True)


def test_hard_time_limit_kills_and_replaces_the_child(cluster):
    """A7: the result is TimeLimitExceeded, the child is replaced, the log line names
    the task and the limit, and other tasks keep running."""
    runs = kind()
    before = cluster.pool_pids()
    result = hard_limited.delay(runs)
    pid = int(settle(cluster, runs, 1, wait=0)[0])
    assert pid in before
    assert add.delay(1, 1).get(timeout=T) == 2  # the other child still works meanwhile
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=LIMIT_WAIT)
    pool_replaced(cluster, {pid}, 2)
    wait_for(lambda: hard_limit_line(hard_limited.name, result.id, 1).search(cluster.log()),
             10, "no log line naming the task and its limit")
    assert add.delay(2, 2).get(timeout=T) == 4


def test_hard_time_limit_per_call(cluster):
    result = sleeper.apply_async((kind(), 30), time_limit=1)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=LIMIT_WAIT)
    assert hard_limit_line(sleeper.name, result.id, 1).search(cluster.log())


@pytest.fixture(scope="module", params=["redis"])
def limited_cluster(request, tmp_path_factory):
    """A worker with worker-wide limits: soft 0.5 s, hard 2 s (limits are enforced by the
    pool, whatever the broker; the per-task and per-call tests cover both brokers)."""
    yield from running(request.param, tmp_path_factory, stop_timeout=STOP_TIMEOUT,
                       env={"FLOWQ_TEST_SOFT_TIME_LIMIT": "0.5", "FLOWQ_TEST_TIME_LIMIT": "2"})


def test_worker_wide_soft_time_limit(limited_cluster):
    assert sleeper.delay(kind(), 30).get(timeout=LIMIT_WAIT) == "cleaned up"


def test_worker_wide_hard_time_limit_stops_a_task_ignoring_its_soft_limit(limited_cluster):
    runs = kind()
    result = stubborn.delay(runs, 30)
    assert settle(limited_cluster, runs, 2, wait=0)[1] == "soft"  # it saw the soft limit
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=LIMIT_WAIT)
    assert hard_limit_line(stubborn.name, result.id, 2).search(limited_cluster.log())
