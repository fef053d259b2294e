"""Signals on a real worker: each one fires, with Celery's sender and arguments, in the
process where Celery fires it.

The receivers (``tests/integration/signal_receivers.py``) are connected in the worker
(``FLOWQ_TEST_SIGNALS=1``) and, for the publishing signals, in this process; each writes
what it got and its pid to the ledger list ``signals``. The module's worker also has a
``setup_logging`` receiver, so it must leave logging to it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection, Producer

from flowq import signals, states
from flowq.runtime.logs import TEXT_FORMAT as FORMAT
from tests.integration import signal_receivers as receivers
from tests.integration.app import add, app, fail
from tests.integration.semantics_support import (
    NamedCluster,
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    require,
    settle,
    wait_for,
    wait_state,
)
from tests.integration.semantics_tasks import die_once_unprotected, flaky, long_sleep, stamp

pytestmark = pytest.mark.timeout(120)
CONFIG = "redis-db10"  # this module's Redis database (broker, backend and ledger)
WORKER_ENV = {"FLOWQ_TEST_SIGNALS": "1", "FLOWQ_TEST_OWN_LOGGING": "1"}


def start(tmp_path_factory: pytest.TempPathFactory, *args: str,
          env: dict[str, str]) -> NamedCluster:
    require("redis")
    instance = NamedCluster(CONFIG, tmp_path_factory.mktemp("signals"))
    instance.configure(app)
    try:
        instance.start_named(*args, concurrency=2, env=env)
    except BaseException:
        instance.cleanup()
        raise
    return instance


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NamedCluster]:
    instance = start(tmp_path_factory, env=WORKER_ENV)
    receivers.connect(receivers.PUBLISHING)  # this process publishes
    try:
        yield instance
    finally:
        receivers.disconnect(receivers.PUBLISHING)
        instance.cleanup()


def recorded(cluster: NamedCluster, signal_name: str | None = None,
             task_id: str | None = None) -> list[dict[str, Any]]:
    entries = [json.loads(entry) for entry in cluster.ledger_list("signals")]
    return [e for e in entries if (signal_name is None or e["signal"] == signal_name)
            and (task_id is None or e.get("id") == task_id)]


def signals_of(cluster: NamedCluster, task_id: str, *expected: str) -> dict[str, dict[str, Any]]:
    """The signals recorded for ``task_id`` by name, once all of ``expected`` are there."""
    def found() -> dict[str, dict[str, Any]] | None:
        by_name = {e["signal"]: e for e in recorded(cluster, task_id=task_id)}
        return by_name if set(expected) <= set(by_name) else None

    return wait_for(found, T, f"signals {expected} for {task_id}")


def main_pid(cluster: NamedCluster) -> int:
    return cluster.workers[0].pid


def test_a_task_sends_each_signal_in_its_process_with_celerys_arguments(cluster):
    result = add.delay(2, 3)
    assert result.get(timeout=T) == 5
    seen = signals_of(cluster, result.id, "before_task_publish", "after_task_publish",
                      "task_received", "task_prerun", "task_success", "task_postrun")
    children = cluster.pool_pids()

    published = seen["before_task_publish"]
    assert published["pid"] == os.getpid() == seen["after_task_publish"]["pid"]
    assert published["sender"] == add.name  # the task's name, as in Celery
    assert (published["args"], published["kwargs"]) == ([2, 3], {})
    assert published["exchange"] == "" and published["routing_key"] == cluster.queue
    assert {"correlation_id", "priority"} <= set(published["properties"])
    assert seen["after_task_publish"]["routing_key"] == cluster.queue

    assert seen["task_received"]["pid"] == main_pid(cluster)
    assert seen["task_received"]["sender"] == "Intake"  # the worker's consumer
    assert seen["task_received"]["name"] == add.name

    prerun, success, postrun = seen["task_prerun"], seen["task_success"], seen["task_postrun"]
    assert prerun["pid"] in children and success["pid"] == prerun["pid"] == postrun["pid"]
    assert prerun["sender"] == prerun["task"] == add.name
    assert (prerun["args"], prerun["kwargs"], prerun["request_id"]) == ([2, 3], {}, result.id)
    assert success["result"] == 5  # sender.request is the running task's, as in Celery
    assert (postrun["state"], postrun["retval"], postrun["args"]) == ("SUCCESS", "5", [2, 3])
    order = [e["signal"] for e in recorded(cluster, task_id=result.id)
             if e["pid"] == prerun["pid"]]
    assert order == ["task_prerun", "task_success", "task_postrun"]


def test_next_steps_are_published_by_the_pool_process(cluster):
    result = (add.s(1, 1) | add.s(3)).delay()
    assert result.get(timeout=T) == 5
    seen = signals_of(cluster, result.id, "before_task_publish", "after_task_publish",
                      "task_postrun")
    first = signals_of(cluster, result.parent.id, "task_postrun")
    assert seen["before_task_publish"]["pid"] == first["task_postrun"]["pid"]  # the child
    assert seen["before_task_publish"]["args"] == [2, 3]  # the parent's result first
    assert seen["after_task_publish"]["pid"] == first["task_postrun"]["pid"]


def test_a_header_added_before_publish_reaches_the_task_and_travels_on(cluster):
    """A tracing integration: the producer's receiver adds ``traceparent``; the task reads
    it as ``self.request.traceparent``; the worker's receiver passes it to the next step."""
    result = (receivers.traced.s(1) | receivers.traced.s()).delay()
    last = result.get(timeout=T)
    first = result.parent.get(timeout=T)
    expected = f"trace-{result.parent.id}"
    assert first == {"attribute": expected, "header": expected, "value": 1}
    assert last == {"attribute": expected, "header": expected, "value": first}


def test_failures_and_retries_send_their_signals_with_exception_info(cluster):
    failed = fail.delay(7)
    with pytest.raises(ValueError):
        failed.get(timeout=T)
    seen = signals_of(cluster, failed.id, "task_failure", "task_postrun")
    failure = seen["task_failure"]
    assert failure["pid"] in cluster.pool_pids() and failure["sender"] == fail.name
    assert failure["exception"] == repr(ValueError("expected failure (7,)"))
    assert (failure["args"], failure["kwargs"]) == ([7], {})
    assert (failure["traceback"], failure["einfo"], failure["einfo_exception"]) == (
        "Traceback", "ExceptionInfo", "ValueError")
    assert 'raise ValueError(f"expected failure {args!r}")' in failure["einfo_traceback"]
    assert seen["task_postrun"]["state"] == "FAILURE"

    retried = flaky.delay("done", kind(), failures=1, countdown=0.2)
    assert retried.get(timeout=T) == "done"
    retry = recorded(cluster, "task_retry", retried.id)
    assert len(retry) == 1 and retry[0]["pid"] in cluster.pool_pids()
    assert (retry[0]["reason"], retry[0]["retries"], retry[0]["einfo"]) == (
        "Retry", 0, "ExceptionInfo")
    assert "attempt 0 failed" in retry[0]["reason_exc"]
    states_seen = [e["state"] for e in recorded(cluster, "task_postrun", retried.id)]
    assert states_seen == ["RETRY", "SUCCESS"]


def test_a_process_that_dies_is_reported_by_the_main_process(cluster):
    name = kind()
    lost = die_once_unprotected.delay(name)
    with pytest.raises(Exception, match="died"):
        lost.get(timeout=T)
    failure = signals_of(cluster, lost.id, "task_failure")["task_failure"]
    assert failure["pid"] == main_pid(cluster)  # the process that ran it is gone
    assert failure["exception"].startswith("WorkerLostError(")
    assert (failure["args"], failure["einfo"]) == ([name], "ExceptionInfo")


def test_revoked_expired_unknown_and_rejected_are_signalled_by_the_main_process(cluster):
    busy, runs = kind(), kind()
    blockers = [long_sleep.delay(busy, 30) for _ in range(2)]
    settle(cluster, busy, 2, wait=0)
    expiring = stamp.apply_async((runs,), countdown=0.2, expires=1.0)
    time.sleep(1.3)  # it arrives, waits for a free process, and expires
    blockers[0].revoke(terminate=True)  # frees a process: the expired task is taken next
    queued = stamp.apply_async((runs,), countdown=600)
    queued.revoke()
    for result in (blockers[0], expiring, queued):
        wait_state(result, states.REVOKED)
    blockers[1].revoke(terminate=True)
    assert cluster.ledger_list(runs) == []

    main = main_pid(cluster)
    terminated = signals_of(cluster, blockers[0].id, "task_revoked")["task_revoked"]
    assert (terminated["pid"], terminated["sender"], terminated["args"]) == (
        main, long_sleep.name, [busy, 30])
    assert (terminated["terminated"], terminated["signum"], terminated["expired"]) == (
        True, signal.SIGTERM, False)
    expired = signals_of(cluster, expiring.id, "task_revoked")["task_revoked"]
    assert (expired["terminated"], expired["signum"], expired["expired"]) == (False, None, True)
    revoked = signals_of(cluster, queued.id, "task_revoked")["task_revoked"]
    assert (revoked["terminated"], revoked["expired"], revoked["pid"]) == (False, False, main)

    unknown = app.send_task("tests.integration.no_such_task", args=[1])
    seen = signals_of(cluster, unknown.id, "task_unknown")["task_unknown"]
    assert (seen["pid"], seen["sender"], seen["name"], seen["exc"], seen["message_id"]) == (
        main, "Intake", "tests.integration.no_such_task", "NotRegistered", unknown.id)

    with Connection(cluster.broker_url) as connection:
        Producer(connection.default_channel).publish(
            b"[[], {}]", exchange=cluster.queue, routing_key=cluster.queue,
            headers={"id": "no-protocol-1", "task": add.name, "root_id": "no-protocol-1"},
            content_type="application/json", content_encoding="utf-8")
    seen = signals_of(cluster, "no-protocol-1", "task_rejected")["task_rejected"]
    assert (seen["pid"], seen["sender"], seen["exc"]) == (main, "Intake", "UnsupportedProtocol")
    assert recorded(cluster, "task_received", "no-protocol-1") == []


def test_a_raising_receiver_is_logged_and_breaks_nothing(cluster, caplog):
    assert receivers.breaks_receiver.delay(5).get(timeout=T) == 5  # its prerun receiver raised
    wait_for(lambda: receivers.RECEIVER_ERROR in cluster.log(), 10, "the receiver's error logged")
    assert "Signal receiver" in cluster.log()

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("producer-side receiver broke")

    signals.before_task_publish.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, logger="flowq.signals"):
            assert add.delay(20, 22).get(timeout=T) == 42
    finally:
        assert signals.before_task_publish.disconnect(broken)
    assert "producer-side receiver broke" in caplog.text


def test_a_setup_logging_receiver_configures_logging_instead_of_flowq(cluster):
    lines = [line for line in cluster.log().splitlines() if "flowq.worker" in line]
    assert lines and all(line.startswith("OWN-LOGGING ") for line in lines)
    [setup] = recorded(cluster, "setup_logging")
    assert setup["pid"] == main_pid(cluster)
    assert (setup["loglevel"], setup["logfile"], setup["format"], setup["colorize"]) == (
        logging.INFO, None, FORMAT, False)
    assert recorded(cluster, "after_setup_logger") == []  # flowq did not set logging up


def test_worker_lifecycle_signals_fire_in_the_main_and_pool_processes(tmp_path_factory):
    instance = start(tmp_path_factory, "-B", env={"FLOWQ_TEST_SIGNALS": "1"})
    try:
        worker = instance.workers[0]
        assert add.delay(1, 1).get(timeout=T) == 2
        children = instance.pool_pids()
        assert worker.stop(signal.SIGTERM) == 0
        seen = recorded(instance)
    finally:
        instance.cleanup()
    main = [e for e in seen if e["pid"] == worker.pid]
    names = [e["signal"] for e in main]
    assert names[0] == "after_setup_logger" and names[-1] == "worker_shutdown"
    logger = main[0]
    assert (logger["logger"], logger["loglevel"], logger["format"]) == ("root", logging.INFO,
                                                                      FORMAT)
    for name in ("worker_init", "worker_ready", "beat_init", "beat_embedded_init"):
        assert names.count(name) == 1, name
    assert names.index("worker_init") < names.index("worker_ready")
    by_name = {e["signal"]: e for e in main}
    assert by_name["worker_init"]["sender"] == "Worker"
    assert by_name["worker_init"]["pool"] == []  # sent before the pool's processes start
    assert by_name["worker_ready"]["sender"] == "Intake"
    assert by_name["beat_init"]["sender"] == by_name["beat_embedded_init"]["sender"] == "Beat"
    assert by_name["worker_shutdown"]["sender"] == "Worker"

    started = [e for e in seen if e["signal"] == "worker_process_init"]
    ended = [e for e in seen if e["signal"] == "worker_process_shutdown"]
    assert {e["pid"] for e in started} == set(children) == {e["pid"] for e in ended}
    assert all(e["sender"] is None for e in started + ended)
    assert all(e["arg_pid"] == e["pid"] and e["exitcode"] == 0 for e in ended)
