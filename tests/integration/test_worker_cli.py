"""The worker's command line as a Celery user types it, against real workers on Redis.

``-A`` after the command and as a file, ``--max-memory-per-child``, ``--time-limit`` /
``--soft-time-limit``, ``--pidfile``, ``--autoscale`` and ``control autoscale``, events
turned on and off at run time (and ``flowq events`` saying when no worker sends any),
``inspect query_task/clock/report``, ``call --eta/--expires/--serializer``, ``result
--traceback``, a broker that cannot be reached, and the cold shutdown.

Everything lives in Redis database 13, under this run's queue names and key prefixes;
remote control goes through this run's own control exchange.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from flowq import states
from flowq.cli import main
from flowq.exceptions import TimeLimitExceeded, WorkerLostError
from flowq.runtime.events import EventReceiver
from tests.integration import app as tasks
from tests.integration import semantics_tasks
from tests.integration.app import app
from tests.integration.harness import REDIS_URL, ROOT, Cluster, require_server, wait_for
from tests.reliability import fault_tasks

APP = "tests.integration.app:app"
DB = 13
URLS = (f"{REDIS_URL}/{DB}", f"{REDIS_URL}/{DB}?key_prefix={{prefix}}")
#: --max-memory-per-child: well above a pool process's own size (about 60 MiB), well
#: below it plus what pid_after_allocating(HOG_MIB) takes.
LIMIT_KIB, HOG_MIB = 160_000, 200


def cli(*args: str) -> Any:
    """The command line in this process, on the app as the test configured it."""
    return CliRunner().invoke(main, ["-A", APP, *args])


def flowq(cluster: Cluster, *args: str, env: dict[str, str] | None = None
          ) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own, with ``cluster``'s environment."""
    return subprocess.run([sys.executable, "-m", "flowq", *args], cwd=ROOT,
                          env={**cluster.env, **(env or {})}, capture_output=True, text=True,
                          timeout=60)


def node_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"


def errors(result: Any) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


class Workers:
    """The module's two workers: one with the options, one autoscaled on its own queue."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.node = node_name("opts")
        self.auto_node = node_name("auto")
        self.auto_queue = f"{cluster.queue}-auto"
        self.pidfile = cluster.tmp / "run" / "%n.pid"
        # Given by a Celery user's hands: -A after the command, and as a file.
        self.worker = cluster.start_worker(
            "-A", "tests/integration/app.py", "-n", self.node, "--pidfile", str(self.pidfile),
            "--max-memory-per-child", str(LIMIT_KIB), "--time-limit", "2",
            "--soft-time-limit", "1", app=None, concurrency=1, wait=False,
            env={"FLOWQ_TEST_ACCEPT": "json,msgpack"})
        self.auto = cluster.start_worker(
            "-n", self.auto_node, "-Q", self.auto_queue, "--autoscale", "3,1",
            concurrency=1, wait=False, env={"FLOWQ_TEST_AUTOSCALE_KEEPALIVE": "1"})
        for worker, node in ((self.worker, self.node), (self.auto, self.auto_node)):
            cluster.wait_ready(worker)
            wait_for(lambda n=node: app.control.ping(destination=[n], timeout=1), 30,
                     f"{node} to answer")

    def stats(self, node: str) -> dict[str, Any]:
        return (app.control.inspect([node], 5).stats() or {})[node]


@pytest.fixture(scope="module")
def module_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    require_server("Redis", 6379)
    cluster = Cluster("redis", tmp_path_factory.mktemp("worker-cli"), urls=URLS)
    cluster.configure(app)
    try:
        yield Workers(cluster)
    finally:
        cluster.cleanup()
        app.close()


@pytest.fixture
def workers(module_workers: Workers) -> Workers:
    module_workers.cluster.configure(app)  # another test may have pointed the app elsewhere
    return module_workers


# -- options of worker ---------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_the_pidfile_holds_the_worker_and_refuses_a_second_one(workers: Workers) -> None:
    written = workers.pidfile.parent / f"{workers.node.split('@')[0]}.pid"  # %n expanded
    assert written.read_text() == f"{workers.worker.pid}\n"
    twin = flowq(workers.cluster, "worker", "-A", APP, "--pidfile", str(workers.pidfile),
                 "-n", workers.node)
    assert twin.returncode == 1, twin.stderr
    assert twin.stderr.splitlines()[-1] == (
        f"Error: ConfigurationError: pidfile {written} holds pid {workers.worker.pid}, which "
        f"is running: another worker uses it; stop that worker, or give this one another "
        f"--pidfile")
    assert "flowq worker" not in twin.stderr  # refused before its banner
    assert written.read_text() == f"{workers.worker.pid}\n"  # left alone


@pytest.mark.timeout(120)
def test_a_child_over_the_memory_limit_is_replaced_after_its_task(workers: Workers) -> None:
    # Given one pool process (-c 1) and --max-memory-per-child
    assert f"memory per child {LIMIT_KIB} KiB" in workers.worker.log()
    # When tasks run, one of them taking more memory than the limit
    pids = [tasks.pid_after_allocating.delay(mib).get(timeout=60) for mib in (0, 0, HOG_MIB, 0)]
    # Then the process ran the big task to its end, and only then was replaced
    assert pids[0] == pids[1] == pids[2] != pids[3], pids


@pytest.mark.timeout(120)
def test_worker_wide_time_limits(workers: Workers) -> None:
    kind = f"limits-{uuid.uuid4().hex[:8]}"
    # --soft-time-limit 1: raised inside the task, which catches it
    assert semantics_tasks.sleeper.delay(kind, 30).get(timeout=60) == "cleaned up"
    # --time-limit 2: a task that ignores its soft limit is killed
    stubborn = semantics_tasks.stubborn.delay(kind, 30)
    with pytest.raises(TimeLimitExceeded, match="hard time limit"):
        stubborn.get(timeout=60)
    assert tasks.add.delay(1, 2).get(timeout=60) == 3  # a new process took over


@pytest.mark.timeout(120)
def test_autoscale_grows_with_load_then_shrinks_and_takes_new_bounds(workers: Workers) -> None:
    node = workers.auto_node
    assert workers.stats(node)["autoscaler"] == {"max": 3, "min": 1, "keepalive": 1.0}
    assert workers.stats(node)["pool"]["concurrency"] == 1
    kind = f"auto-{uuid.uuid4().hex[:8]}"
    # Given four waiting tasks that each block until released
    waiting = [fault_tasks.early_step.apply_async((i,), {"fault": "block", "kind": kind,
                                                         "token": f"{kind}-go"},
                                                 queue=workers.auto_queue) for i in range(4)]
    try:
        # Then the pool grows to MAX (3), and three of them run at once
        wait_for(lambda: workers.stats(node)["pool"]["concurrency"] == 3, 30, "growth to 3")
        wait_for(lambda: len(workers.cluster.ledger_list(f"{kind}:starts")) == 3, 30,
                 "three tasks running at once")
        assert workers.stats(node)["active"] == 3
    finally:
        workers.cluster.release(f"{kind}-go")
    assert [r.get(timeout=60) for r in waiting] == [1, 2, 3, 4]
    # And idle again, it shrinks back to MIN once the keepalive has passed
    wait_for(lambda: workers.stats(node)["pool"]["concurrency"] == 1, 30, "shrinking to 1")

    moved = cli("control", "autoscale", "4", "2", "-d", node, "-t", "5")
    assert moved.output == f"{node}: OK autoscale max=4 min=2, pool size is now 2\n"
    assert workers.stats(node)["autoscaler"]["min"] == 2
    assert workers.stats(node)["prefetch_count"] == 4 * 4  # sized for MAX

    off = cli("control", "autoscale", "4", "2", "-d", workers.node, "-t", "5")
    assert off.exit_code == 1
    assert f"{workers.node}: ERROR autoscale is off for this worker" in off.output


# -- events turned on and off, inspect ------------------------------------------------------------


@pytest.mark.timeout(120)
def test_events_say_when_no_worker_sends_them_and_can_be_turned_on(workers: Workers) -> None:
    node = workers.node  # both started without -E
    silent = cli("events", "--timeout", "60")
    assert silent.exit_code == 1
    answered = ", ".join(sorted([node, workers.auto_node]))
    assert errors(silent) == [
        f"Error: no worker sends events: the 2 that answered ({answered}) have them off; start "
        f"workers with -E (or worker_send_task_events = True), or turn them on now with "
        f"'flowq -A {APP} control enable_events'"]
    refused = cli("control", "heartbeat", "-d", node, "-t", "5")
    assert refused.exit_code == 1 and "ERROR events are off for this worker" in refused.output

    with EventReceiver(app) as receiver:
        def until(kind: str, task_id: str | None = None) -> dict[str, Any]:
            for event in receiver.events(timeout=30):
                if event["hostname"] == node and event["type"] == kind and (
                        task_id is None or event.get("uuid") == task_id):
                    return event
            raise AssertionError(f"no {kind} event from {node}")

        try:
            assert cli("control", "enable_events", "-d", node, "-t", "5").output == (
                f"{node}: OK events on\n")
            until("worker-online")
            assert workers.stats(node)["events"] is True
            assert cli("control", "heartbeat", "-d", node, "-t", "5").output == (
                f"{node}: OK heartbeat sent\n")
            until("worker-heartbeat")
            sent = tasks.add.delay(2, 2)
            assert until("task-succeeded", sent.id)["result"] == "4"
        finally:
            off = cli("control", "disable_events", "-d", node, "-t", "5")
        assert off.output == f"{node}: OK events off\n"
        until("worker-offline")
    assert workers.stats(node)["events"] is False


@pytest.mark.timeout(120)
def test_inspect_query_task_clock_and_report(workers: Workers) -> None:
    node = workers.node
    kind = f"query-{uuid.uuid4().hex[:8]}"
    running = fault_tasks.early_step.delay(0, fault="block", kind=kind)
    try:
        wait_for(lambda: workers.cluster.ledger_list(f"{kind}:starts"), 30, "the task to run")
        queued = tasks.add.delay(1, 1)  # taken behind it (-c 1): reserved
        wait_for(lambda: workers.stats(node)["reserved"] == 1, 30, "the add to be reserved")
        asked = cli("inspect", "query_task", running.id, queued.id, "not-an-id", "-d", node,
                    "--json", "-t", "5")
        assert asked.exit_code == 0, asked.output
        answer = json.loads(asked.output)[node]
        assert sorted(answer) == sorted([running.id, queued.id])
        assert answer[running.id][0] == "active" and answer[queued.id][0] == "reserved"
        assert answer[queued.id][1]["name"] == "tests.integration.app.add"
        lines = cli("inspect", "query_task", queued.id, "-d", node, "-t", "5").output
        assert lines.splitlines() == [f"{node}: 1 of the task(s)",
                                      f"  reserved tests.integration.app.add[{queued.id}] "
                                      f"queue={workers.cluster.queue}"]
    finally:
        workers.cluster.release(running.id)
    assert queued.get(timeout=60) == 2

    clock = cli("inspect", "clock", "-d", node, "-t", "5", "--json")
    assert set(json.loads(clock.output)[node]) == {"clock", "time"}
    assert cli("inspect", "clock", "-d", node, "-t", "5").output.startswith(f"{node}: clock ")

    report = cli("inspect", "report", "-d", node, "-t", "5").output.splitlines()
    assert report[0].startswith(f"{node}: OK flowq ") and " on Python 3." in report[0]
    assert any(line.startswith("  app: tests/integration/app.py (") for line in report)
    assert f"  broker: {REDIS_URL}/{DB}" in report

    usage = cli("inspect", "query_task")
    assert usage.exit_code == 2 and errors(usage) == [
        "Error: inspect query_task takes one or more task ids"]


# -- call and result ---------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_call_with_eta_expires_and_serializer_and_result_with_traceback(
        workers: Workers) -> None:
    eta = (datetime.now(timezone.utc) + timedelta(seconds=1)).isoformat()
    sent = flowq(workers.cluster, "-A", APP, "call", "tests.integration.app.add", "--args",
                 "[2, 3]", "--eta", eta, "--expires", "120", "--serializer", "msgpack",
                 env={"FLOWQ_TEST_ACCEPT": "json,msgpack"})
    assert sent.returncode == 0, sent.stderr
    assert app.AsyncResult(sent.stdout.strip()).get(timeout=60) == 5

    failed = tasks.fail.delay(1)
    shown = cli("result", failed.id, "--wait", "--timeout", "60", "--traceback")
    assert shown.exit_code == 1
    lines = shown.output.splitlines()
    assert lines[0] == "FAILURE ValueError: expected failure (1,)"
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: expected failure (1,)"


# -- an unreachable broker ----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_worker_without_its_broker_says_so_quickly_and_exits_69(tmp_path: Path) -> None:
    cluster = Cluster("redis", tmp_path, urls=("redis://:secret@127.0.0.1:1/0", None))
    done = flowq(cluster, "-A", APP, "worker", "-c", "1", env={"FLOWQ_TEST_CONNECT_RETRIES": "2"})
    assert done.returncode == 69
    lines = [line.split("] ", 1)[-1] for line in done.stderr.splitlines()]
    assert lines[0].startswith("flowq.worker: flowq worker flowq@")  # the banner first
    assert "  broker:      redis://:**@127.0.0.1:1/0" in lines
    tries = [line for line in lines if line.startswith("flowq.worker: Cannot connect")]
    assert [t.rsplit(";", 1)[1] for t in tries] == [" trying again in 0.1s (retry 1/2)",
                                                    " trying again in 0.6s (retry 2/2)"]
    assert all("the broker at redis://:**@127.0.0.1:1/0 (" in t for t in tries)
    assert lines[-1].startswith("flowq.worker: Could not connect to the broker at "
                                "redis://:**@127.0.0.1:1/0 after 3 attempts (")
    assert lines[-1].endswith("; check that it runs and that broker_url (or FLOWQ_BROKER_URL) "
                              "points to it")
    assert "secret" not in done.stderr + done.stdout


# -- cold shutdown --------------------------------------------------------------------------------------


@pytest.fixture
def cold_cluster(tmp_path: Path) -> Iterator[Cluster]:
    require_server("Redis", 6379)
    cluster = Cluster("redis", tmp_path, urls=URLS)
    cluster.configure(app)
    yield cluster
    cluster.cleanup()
    app.close()


@pytest.mark.timeout(120)
def test_cold_shutdown_fails_early_acked_tasks_and_requeues_late_acked_ones(
        cold_cluster: Cluster) -> None:
    cluster = cold_cluster
    kind = f"cold-{uuid.uuid4().hex[:8]}"
    first = cluster.start_worker("-n", node_name("cold"), concurrency=2)
    # Given an early-acked task running as the first step of a chain with an errback,
    # and a late-acked task running beside it, both blocked until released
    chained = (fault_tasks.early_step.s(0, fault="block", kind=kind)
               | tasks.note.s(kind=f"{kind}:next")).on_error(
        tasks.errback.s(kind=f"{kind}:errbacks")).delay()
    early = chained.parent
    late = fault_tasks.late_step.delay(0, fault="block", kind=kind)
    wait_for(lambda: len(cluster.ledger_list(f"{kind}:starts")) == 2, 30, "both to run")
    # When Ctrl-C is pressed twice
    first.send_signal(signal.SIGINT)
    wait_for(lambda: "press Ctrl-C again (or send SIGQUIT) to stop at once" in first.log(), 30,
             "the warm shutdown's hint")
    first.send_signal(signal.SIGINT)
    assert first.wait(30) == 1, first.log()
    log = first.log()
    # Then the early-acked task is failed, its errback ran and the chain's next step failed
    assert early.state == states.FAILURE
    assert isinstance(early.result, WorkerLostError)
    assert "interrupted by the cold shutdown" in str(early.result)
    assert chained.state == states.FAILURE
    assert (f"Task tests.reliability.fault_tasks.early_step[{early.id}] interrupted: recorded "
            f"as failed (WorkerLostError)") in log
    # And the late-acked one went back to its queue
    assert (f"Task tests.reliability.fault_tasks.late_step[{late.id}] interrupted: returned "
            f"to its queue (acks_late), it runs again") in log
    assert f"{late.id}] succeeded" not in log
    # Then, on the next worker: the errback runs (it was sent), the chain's next step does
    # not, and the late-acked task runs to its end
    cluster.start_worker("-n", node_name("after"), concurrency=1)
    assert late.get(timeout=60) == 1
    wait_for(lambda: cluster.ledger_list(f"{kind}:errbacks") == [early.id], 30, "the errback")
    assert cluster.ledger_list(f"{kind}:next") == []
    starts = [s.split("|")[0] for s in cluster.ledger_list(f"{kind}:starts")]
    assert sorted(starts) == sorted([early.id, late.id, late.id])

