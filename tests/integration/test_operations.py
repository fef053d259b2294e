"""Operations against real workers: remote control, events, status, monitor, purge,
live graphs, per-process log files, and the CLI's error lines.

Workers are real ``flowq worker`` subprocesses on Redis and on RabbitMQ. The mailbox and
the events exchange are shared by every worker on a broker (other test runs included),
so every check names its worker (``-d``) or filters by its own task ids.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowq import fanout, states
from flowq.runtime.events import EventReceiver
from tests.integration import semantics_tasks
from tests.integration import app as tasks
from tests.integration.app import app
from tests.integration.harness import ROOT, Cluster, WorkerProcess, require_server, wait_for

APP = "tests.integration.app:app"
BROKERS = ["redis", "amqp"]


# -- fixtures and helpers ----------------------------------------------------------------------


def _require(name: str) -> None:
    require_server("Redis", 6379)
    if name == "amqp":
        require_server("RabbitMQ", 5672)


@pytest.fixture(scope="module", params=BROKERS)
def ops_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[Cluster]:
    """A cluster with one worker sending events, under a unique node name (``.node``)."""
    _require(request.param)
    cluster = Cluster(request.param, tmp_path_factory.mktemp(f"ops-{request.param}"))
    cluster.configure(app)
    cluster.node = start_named(cluster, "ops", "-E")  # type: ignore[attr-defined]
    yield cluster
    cluster.cleanup()
    app.close()


@pytest.fixture
def ops(ops_cluster: Cluster) -> Cluster:
    """The module's cluster, with this process's app pointed at it again (a test using
    another cluster in between leaves the app pointed elsewhere)."""
    ops_cluster.configure(app)
    return ops_cluster


@pytest.fixture(params=BROKERS)
def bare(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Cluster]:
    """A cluster with no worker: the test starts (and stops) its own."""
    _require(request.param)
    cluster = Cluster(request.param, tmp_path_factory.mktemp(f"bare-{request.param}"))
    cluster.configure(app)
    yield cluster
    cluster.cleanup()
    app.close()


def start_named(cluster: Cluster, prefix: str, *args: str) -> str:
    """Start a worker named ``<prefix>-<random>@<host>``; return the name once it answers.

    The banner the harness waits for comes before the worker listens for remote control,
    and a command sent before that is lost (a fanout delivers only to those listening).
    """
    node = f"{prefix}-{uuid.uuid4().hex[:8]}@{_host()}"
    cluster.start_worker("-n", node, *args)
    wait_for(lambda: app.control.ping(destination=[node], timeout=1))
    return node


def _host() -> str:
    import socket

    return socket.gethostname()


def flowq(cluster: Cluster, *args: str, input: str | None = None, timeout: float = 60,
          env: dict[str, str] | None = None, app_path: str | None = APP
          ) -> subprocess.CompletedProcess[str]:
    """Run the ``flowq`` CLI against ``cluster``."""
    command = [sys.executable, "-m", "flowq", *(("-A", app_path) if app_path else ()), *args]
    return subprocess.run(command, cwd=ROOT, env={**cluster.env, **(env or {})}, input=input,
                          capture_output=True, text=True, timeout=timeout)


def node_of(cluster: Cluster) -> str:
    return cluster.node  # type: ignore[attr-defined, no-any-return]


def ask(cluster: Cluster, *args: str) -> Any:
    """``flowq <args> -d <node> --json``: the node's answer."""
    done = flowq(cluster, *args, "-d", node_of(cluster), "--json", "-t", "5")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)[node_of(cluster)]


def wait_for_log(worker: WorkerProcess, text: str, timeout: float = 30.0) -> None:
    try:
        wait_for(lambda: text in worker.log(), timeout)
    except AssertionError:
        raise AssertionError(f"{text!r} not in the worker's log:\n{worker.log()}") from None


def root_of(result: Any) -> str:
    while result.parent is not None:
        result = result.parent
    return str(result.id)


class Listener:
    """``flowq events --json`` in a subprocess, its lines collected by a thread."""

    def __init__(self, cluster: Cluster, *args: str):
        command = [sys.executable, "-m", "flowq", "-A", APP, "events", "--json", *args]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=cluster.env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        ready = self.proc.stderr.readline()  # type: ignore[union-attr]
        assert "Listening for events" in ready, ready + self.proc.stderr.read()  # type: ignore[union-attr]

    def _read(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self.lines.put(line)

    def until(self, predicate: Any, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Collect events until ``predicate(events)`` holds; return them all."""
        deadline = time.monotonic() + timeout
        while not predicate(self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"events seen: {self.events}")
            try:
                self.events.append(json.loads(self.lines.get(timeout=min(left, 0.5))))
            except queue.Empty:
                pass
        return self.events

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)


def of_task(events: list[dict[str, Any]], task_id: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("uuid") == task_id]


def delete_queue(cluster: Cluster, name: str) -> None:
    """Remove a queue a test created besides the cluster's own."""
    from kombu import Connection

    if cluster.broker_url and cluster.broker_url.startswith("amqp"):
        with Connection(cluster.broker_url) as connection:
            for action in ("queue_delete", "exchange_delete"):
                try:
                    getattr(connection.channel(), action)(name)
                except Exception:  # noqa: BLE001 - already gone
                    pass
    elif cluster.broker_url:
        with Connection(cluster.broker_url) as connection:
            connection.channel().queue_delete(name)


# -- ping, status, inspect ---------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_ping_status_and_inspect_answer_for_the_named_worker(ops: Cluster) -> None:
    node = node_of(ops)
    assert app.control.ping(destination=[node], timeout=5) == [{node: {"ok": "pong"}}]

    done = flowq(ops, "status", "-d", node, "-t", "5")
    assert done.returncode == 0, done.stderr
    assert f"{node}: OK" in done.stdout and "1 node online." in done.stdout

    assert "tests.integration.app.add" in ask(ops, "inspect", "registered")
    stats = ask(ops, "inspect", "stats")
    assert stats["hostname"] == node
    assert stats["pool"]["concurrency"] == 2
    assert stats["queues"] == [ops.queue]
    assert stats["events"] is True
    assert [q["name"] for q in ask(ops, "inspect", "active_queues")] == [ops.queue]
    settings = ask(ops, "inspect", "conf")
    assert settings["task_default_queue"] == ops.queue
    assert "guest:guest" not in json.dumps(settings)  # passwords are masked

    # Human output: one block per node.
    done = flowq(ops, "inspect", "active_queues", "-d", node, "-t", "5")
    assert done.returncode == 0 and done.stdout.splitlines() == [f"{node}: 1 item(s)",
                                                                  f"  {ops.queue}"]


@pytest.mark.timeout(120)
def test_inspect_active_reserved_and_scheduled(ops: Cluster) -> None:
    # Given two tasks keeping both processes busy and a third one waiting behind them
    token = uuid.uuid4().hex
    running = [tasks.gate.delay(token, i) for i in range(2)]
    waiting = tasks.identity.delay("after")
    delayed = tasks.identity.apply_async(("later",), countdown=60)
    try:
        active = wait_for(lambda: len(ask(ops, "inspect", "active")) == 2
                          and ask(ops, "inspect", "active"))
        assert {t["id"] for t in active} == {r.id for r in running}
        assert {t["name"] for t in active} == {"tests.integration.app.gate"}
        assert [t["id"] for t in ask(ops, "inspect", "reserved")] == [waiting.id]
        scheduled = ask(ops, "inspect", "scheduled")
        assert scheduled["delayed_in_backend"] == 1
        assert [(t["id"], t["name"]) for t in scheduled["next"]] == [
            (delayed.id, "tests.integration.app.identity")]
        ops.open_gate(token)
        assert waiting.get(timeout=30) == "after"
    finally:
        ops.open_gate(token)
        app.control.revoke(delayed.id)
    assert ask(ops, "inspect", "active") == []


# -- control -----------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_revoke_stops_a_queued_task(ops: Cluster) -> None:
    node = node_of(ops)
    later = tasks.note.apply_async(("x",), {"kind": "revoked-runs"}, countdown=60)
    done = flowq(ops, "control", "revoke", later.id, "-d", node, "-t", "5")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["revoked 1 id(s) (stored in the result backend)",
                                        f"{node}: OK revoked 1 id(s)"]
    wait_for(lambda: later.state == states.REVOKED, timeout=20)
    assert ops.ledger_list("revoked-runs") == []
    assert later.id in ask(ops, "inspect", "revoked")


@pytest.mark.timeout(120)
def test_terminate_kills_a_running_task(bare: Cluster) -> None:
    node = start_named(bare, "term")
    long = tasks.sleep.delay(12)
    wait_for(lambda: any(t["id"] == long.id
                         for t in (app.control.inspect([node], 5).active() or {}).get(node, [])))
    done = flowq(bare, "control", "terminate", long.id, "-d", node, "-t", "5")
    assert done.returncode == 0, done.stderr
    assert f"{node}: OK revoked 1 id(s), terminated 1" in done.stdout
    wait_for(lambda: long.state != states.PENDING, timeout=15)
    assert long.state == states.REVOKED
    assert app.control.ping(destination=[node], timeout=5) == [{node: {"ok": "pong"}}]


@pytest.mark.timeout(120)
def test_rate_limit_and_time_limit_change_the_running_worker(ops: Cluster) -> None:
    node = node_of(ops)
    name = "tests.integration.app.sleep"
    try:
        done = flowq(ops, "control", "rate_limit", name, "6/m", "-d", node, "-t", "5")
        assert done.returncode == 0 and "OK rate limit" in done.stdout, done.stdout
        assert ask(ops, "inspect", "stats")["rate_limits"] == {name: 0.1}

        # A soft limit only: hard limits are the pool's business (tests/reliability).
        done = flowq(ops, "control", "time_limit", name, "0.5", "-d", node, "-t", "5")
        assert done.returncode == 0, done.stderr
        assert f"{node}: OK time limits of {name} set to soft=0.5 hard=None" in done.stdout
        result = tasks.sleep.delay(10)
        with pytest.raises(Exception) as failure:
            result.get(timeout=30)
        assert type(failure.value).__name__ == "SoftTimeLimitExceeded"
    finally:
        flowq(ops, "control", "rate_limit", name, "0", "-d", node, "-t", "5")
        flowq(ops, "control", "time_limit", name, "0", "-d", node, "-t", "5")
    assert ask(ops, "inspect", "stats")["rate_limits"] == {}
    assert tasks.sleep.delay(0.1, "fine").get(timeout=30) == "fine"

    done = flowq(ops, "control", "rate_limit", "tests.integration.app.nope", "1/s",
                 "-d", node, "-t", "5")
    assert done.returncode == 1
    assert f"{node}: ERROR unknown task 'tests.integration.app.nope'" in done.stdout


@pytest.mark.timeout(120)
def test_consumers_and_pool_size(ops: Cluster) -> None:
    node = node_of(ops)
    extra = f"{ops.queue}-extra"
    try:
        done = flowq(ops, "control", "add_consumer", extra, "-d", node, "-t", "5")
        assert done.returncode == 0 and f"now consuming from {extra}" in done.stdout
        assert [q["name"] for q in ask(ops, "inspect", "active_queues")] == [ops.queue, extra]
        assert tasks.add.apply_async((2, 3), queue=extra).get(timeout=30) == 5

        done = flowq(ops, "control", "cancel_consumer", extra, "-d", node, "-t", "5")
        assert done.returncode == 0, done.stdout
        assert [q["name"] for q in ask(ops, "inspect", "active_queues")] == [ops.queue]
        stranded = tasks.add.apply_async((1, 1), queue=extra)
        time.sleep(1.5)
        assert stranded.state == states.PENDING  # nobody consumes the queue any more
    finally:
        delete_queue(ops, extra)
        delete_queue(ops, extra + ".dead")

    assert flowq(ops, "control", "pool_grow", "-d", node, "-t", "5").returncode == 0
    assert ask(ops, "inspect", "stats")["pool"]["concurrency"] == 3
    assert flowq(ops, "control", "pool_shrink", "1", "-d", node, "-t", "5").returncode == 0
    assert ask(ops, "inspect", "stats")["pool"]["concurrency"] == 2


@pytest.mark.timeout(120)
def test_remote_shutdown_stops_the_worker_warmly(bare: Cluster) -> None:
    node = start_named(bare, "shut")
    worker = bare.workers[-1]
    running = tasks.sleep.delay(3, "finished")
    try:
        wait_for(lambda: app.control.inspect([node], 5).active() not in (None, {node: []}))
    except AssertionError:
        raise AssertionError(f"never seen running ({running.state}):\n{worker.log()}") from None
    done = flowq(bare, "control", "shutdown", "-d", node, "-t", "5")
    assert done.returncode == 0 and f"{node}: OK shutting down" in done.stdout
    assert worker.wait(30) == 0, worker.log()
    assert running.get(timeout=5) == "finished"  # the running task was let finish
    assert "Warm shutdown requested by remote control" in worker.log()


# -- purge -------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_purge_asks_first_and_prints_counts_per_queue(bare: Cluster) -> None:
    first, second = f"{bare.queue}-p1", f"{bare.queue}-p2"
    try:
        for _ in range(3):
            tasks.add.apply_async((1, 1), queue=first)
        tasks.add.apply_async((1, 1), queue=second)

        refused = flowq(bare, "purge", "-Q", f"{first},{second}", input="n\n")
        assert refused.returncode == 1 and "Aborted" in refused.stderr
        assert app.control.queue_sizes([first, second]) == {first: 3, second: 1}

        done = flowq(bare, "purge", "-Q", f"{first},{second}", input="y\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [f"{first}: 3 message(s) removed",
                                                 f"{second}: 1 message(s) removed"]
        assert app.control.queue_sizes([first, second]) == {first: 0, second: 0}

        for _ in range(2):
            tasks.add.apply_async((1, 1), queue=first)
        assert app.control.purge([first, second]) == 2
        done = flowq(bare, "purge", "-f", "-Q", first)
        assert done.stdout.strip() == f"{first}: 0 message(s) removed"
    finally:
        delete_queue(bare, first)
        delete_queue(bare, second)


@pytest.mark.timeout(120)
def test_worker_purge_flag_drops_waiting_messages_before_starting(bare: Cluster) -> None:
    stale = [tasks.note.delay("stale", kind="purge-runs") for _ in range(2)]
    worker = bare.start_worker("--purge")
    wait_for_log(worker, f"Purged 2 message(s) from {bare.queue}")
    fresh = tasks.note.delay("fresh", kind="purge-runs")
    assert fresh.get(timeout=30) == "fresh"
    assert bare.ledger_list("purge-runs") == [fresh.id]
    assert all(r.state == states.PENDING for r in stale)


# -- events --------------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_events_stream_shows_a_task_from_received_to_succeeded(ops: Cluster) -> None:
    listener = Listener(ops, "--type", "task-*", "--timeout", "90")
    try:
        good = tasks.add.delay(2, 2)
        bad = tasks.fail.delay(1)
        events = listener.until(lambda seen: len(of_task(seen, good.id)) >= 3
                                and len(of_task(seen, bad.id)) >= 3)
    finally:
        assert listener.stop() == 0
    mine = of_task(events, good.id)
    assert [e["type"] for e in mine] == ["task-received", "task-started", "task-succeeded"]
    assert [e["clock"] for e in mine] == sorted(e["clock"] for e in mine)
    assert all(e["hostname"] == node_of(ops) and e["name"] == "tests.integration.app.add"
               for e in mine)
    assert mine[0]["queue"] == ops.queue and mine[-1]["result"] == "4"
    failed = of_task(events, bad.id)[-1]
    assert failed["type"] == "task-failed" and failed["exception"].startswith("ValueError")


@pytest.mark.timeout(120)
def test_events_stream_shows_retries_and_revocations(ops: Cluster) -> None:
    listener = Listener(ops, "--type", "task-*", "--timeout", "90")
    try:
        # retried after 1 s: its first run is settled (task-retried) long before it comes back
        retried = semantics_tasks.flaky.delay(7, f"k-{uuid.uuid4().hex[:8]}", failures=1,
                                              countdown=1.0)
        revoked = tasks.identity.apply_async(("never",), countdown=0.5)
        revoked.revoke()
        events = listener.until(
            lambda seen: any(e["type"] == "task-succeeded" for e in of_task(seen, retried.id))
            and any(e["type"] == "task-revoked" for e in of_task(seen, revoked.id)))
    finally:
        assert listener.stop() == 0
    assert [e["type"] for e in of_task(events, retried.id)] == [
        "task-received", "task-started", "task-retried",
        "task-received", "task-started", "task-succeeded"]
    assert retried.get(timeout=10) == 7
    assert [e["type"] for e in of_task(events, revoked.id)] == ["task-received", "task-revoked"]


@pytest.mark.timeout(120)
def test_events_show_worker_online_heartbeat_and_offline(bare: Cluster) -> None:
    node = f"ev-{uuid.uuid4().hex[:8]}@{_host()}"
    listener = Listener(bare, "--type", "worker-*", "--timeout", "90")
    try:
        worker = bare.start_worker("-E", "-n", node)

        def kinds(seen: list[dict[str, Any]]) -> list[str]:
            return [e["type"] for e in seen if e["hostname"] == node]

        listener.until(lambda seen: "worker-heartbeat" in kinds(seen))
        assert worker.stop() == 0
        events = listener.until(lambda seen: "worker-offline" in kinds(seen))
    finally:
        listener.stop()
    assert kinds(events)[0] == "worker-online"
    online = next(e for e in events if e["hostname"] == node)
    assert online["queues"] == [bare.queue] and online["freq"] == 2.0
    assert kinds(events)[-1] == "worker-offline"


@pytest.mark.parametrize("ops_cluster", ["redis"], indirect=True)
@pytest.mark.timeout(60)
def test_events_go_nowhere_without_a_listener_on_redis(ops: Cluster) -> None:
    import redis

    assert tasks.add.delay(1, 1).get(timeout=30) == 2
    client = redis.Redis.from_url(ops.broker_url)
    stored = [key for key in client.scan_iter(match="*flowq.events*")
              if client.type(key) != b"set"]  # binding sets of live listeners are fine
    assert stored == []


@pytest.mark.parametrize("ops_cluster", ["amqp"], indirect=True)
@pytest.mark.timeout(60)
def test_listener_queues_are_bounded_expire_and_vanish_on_rabbitmq(ops: Cluster) -> None:
    from kombu import Connection, Exchange, Producer, Queue

    # The listener queues' own settings, bound to a private exchange so that events of
    # the workers running meanwhile do not land in them.
    private = Exchange(f"ops-events-{uuid.uuid4().hex[:8]}", "fanout", durable=False,
                       auto_delete=True)

    def like(queue: Queue) -> Queue:
        return Queue(queue.name, private, durable=queue.durable, exclusive=queue.exclusive,
                     auto_delete=queue.auto_delete, message_ttl=queue.message_ttl,
                     max_length=queue.max_length, expires=queue.expires)

    bounded = like(EventReceiver(app, max_length=3).queue)
    expiring = like(EventReceiver(app, ttl=0.3).queue)
    assert bounded.message_ttl == 60.0 and expiring.max_length == 10_000  # the defaults
    with Connection(ops.broker_url) as connection:
        channel = connection.channel()
        for declared in (bounded, expiring):
            declared(channel).declare()
        producer = Producer(channel, exchange=private)
        for index in range(10):
            producer.publish({"type": "test-event", "index": index}, delivery_mode=1)
        time.sleep(1.0)

        def size(name: str) -> int:
            return int(channel.queue_declare(queue=name, passive=True).message_count)

        assert size(bounded.name) == 3  # the oldest were dropped
        assert size(expiring.name) == 0  # expired unread
    # Exclusive queues go with their connection.
    with Connection(ops.broker_url) as connection:
        for name in (bounded.name, expiring.name):
            with pytest.raises(Exception, match="NOT_FOUND|404"):
                connection.channel().queue_declare(queue=name, passive=True)


@pytest.mark.timeout(60)
def test_a_killed_listener_queue_is_reaped_on_the_embedded_broker(tmp_path: Path) -> None:
    require_server("Redis", 6379)
    cluster = Cluster("embedded", tmp_path)
    cluster.configure(app)
    try:
        listener = Listener(cluster, "--timeout", "60")
        os.killpg(listener.proc.pid, signal.SIGKILL)
        listener.proc.wait(10)

        def listener_queues() -> list[str]:
            from flowq.runtime import broker

            with broker.connect(app.conf) as connection:
                table = connection.default_channel.get_table("flowq.events")
            return [name for _, _, name in table]

        assert len(listener_queues()) == 1  # the killed listener's queue is still bound
        with EventReceiver(app) as receiver:
            assert listener_queues() == [receiver.queue.name]
        assert listener_queues() == []
    finally:
        cluster.cleanup()
        app.close()


# -- monitor -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_monitor_once_prints_workers_and_queue_counts(ops: Cluster) -> None:
    node = node_of(ops)
    idle = f"{ops.queue}-idle"
    try:
        for _ in range(2):
            tasks.add.apply_async((1, 1), queue=idle)
        done = flowq(ops, "monitor", "--once", "-Q", idle, "-t", "2")
        assert done.returncode == 0, done.stderr
    finally:
        delete_queue(ops, idle)
    rows = {line.split()[0]: line.split() for line in done.stdout.splitlines() if line.strip()}
    assert rows["WORKER"] == ["WORKER", "POOL", "ACTIVE", "RESERVED", "SUCCEEDED", "FAILED",
                              "UPTIME"]
    assert rows[node][1:3] == ["2", "0"]
    assert rows[ops.queue][1:] == ["0", "1"]  # waiting, consumers
    assert rows[idle][1:] == ["2", "0"]
    assert "\x1b[" not in done.stdout  # --once is plain text


# -- graph by root id --------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_graph_by_root_id_shows_live_states(ops: Cluster) -> None:
    # Given a chain whose first step runs until the test lets it finish
    token = uuid.uuid4().hex
    result = (tasks.gate.s(token, 7) | tasks.add.s(1)).delay()
    root = root_of(result)
    wait_for(lambda: any(t["id"] == root for t in ask(ops, "inspect", "active")))
    # When it is drawn while the first step runs
    running = flowq(ops, "graph", root, "-t", "1")
    assert running.returncode == 0, running.stderr
    lines = running.stdout.splitlines()
    assert lines[0].startswith(f"workflow {root[:8]} (2 nodes")
    assert "[STARTED]" in lines[1] and f"tests.integration.app.gate('{token}', 7)" in lines[1]
    assert "[PENDING]" in lines[2]
    # Then, once finished, every node shows its outcome
    ops.open_gate(token)
    assert result.get(timeout=30) == 8
    finished = flowq(ops, "graph", root, "-t", "3").stdout.splitlines()
    assert "[SUCCESS]" in finished[1] and "-> 7" in finished[1]
    assert "[SUCCESS]" in finished[2] and "-> 8" in finished[2]

    spread = (tasks.make_list.s(3) | fanout(tasks.square.s()) | tasks.tsum.s()).delay()
    assert spread.get(timeout=30) == 5
    drawn = flowq(ops, "graph", root_of(spread), "--format", "mermaid").stdout
    assert "fanout[3]" in drawn and "classDef success" in drawn

    broken = (tasks.fail.si() | tasks.add.si(1, 1)).delay()
    with pytest.raises(ValueError):
        broken.get(timeout=30)
    text = flowq(ops, "graph", root_of(broken), "-t", "0").stdout
    assert text.count("[FAILURE]") == 2 and "ValueError" in text


@pytest.mark.timeout(60)
def test_graph_of_an_unknown_or_single_task_id_is_a_clear_error(ops: Cluster) -> None:
    single = tasks.add.delay(1, 2)
    assert single.get(timeout=30) == 3
    done = flowq(ops, "graph", single.id)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"Error: task {single.id} is SUCCESS, but no workflow is "
                                   f"stored for it (a single task, one sent from inside a "
                                   f"task, or expired after result_expires)")
    done = flowq(ops, "graph", "no-such-id")
    assert done.returncode == 1 and "nothing is known about no-such-id" in done.stderr


# -- worker start-up: duplicate names, log files -------------------------------------------------


@pytest.mark.timeout(120)
def test_a_duplicate_node_name_is_warned_about_at_start(ops: Cluster) -> None:
    twin = ops.start_worker("-n", node_of(ops))
    try:
        wait_for_log(twin, f"A worker named {node_of(ops)} is already running")
        if ops.name == "amqp":  # the mailbox queue is exclusive: the twin cannot listen
            wait_for_log(twin, "Remote control is off for this worker")
        assert tasks.add.delay(20, 22).get(timeout=30) == 42  # both still run tasks
    finally:
        twin.stop()
        ops.workers.remove(twin)
    fresh = ops.start_worker("-n", f"solo-{uuid.uuid4().hex[:8]}@%h", "-Q", f"{ops.queue}-x")
    try:
        assert "already running" not in fresh.log()
    finally:
        fresh.stop()
        ops.workers.remove(fresh)
        delete_queue(ops, f"{ops.queue}-x")
        delete_queue(ops, f"{ops.queue}-x.dead")


@pytest.mark.timeout(120)
def test_logfile_writes_one_file_per_process(tmp_path: Path) -> None:
    require_server("Redis", 6379)
    cluster = Cluster("redis", tmp_path)
    cluster.configure(app)
    name = f"logs-{uuid.uuid4().hex[:6]}"
    pattern = tmp_path / "logs" / "%n-%i.log"
    try:
        worker = cluster.start_worker("-n", f"{name}@%h", "--logfile", str(pattern), wait=False)
        main_log = tmp_path / "logs" / f"{name}-0.log"
        wait_for(lambda: main_log.exists() and "flowq worker" in main_log.read_text())
        results = [tasks.shout.delay(f"hello {i}") for i in range(6)]
        assert [r.get(timeout=30) for r in results] == [f"hello {i}" for i in range(6)]
        time.sleep(0.5)
        children = {p.name: p.read_text() for p in (tmp_path / "logs").glob(f"{name}-*.log")
                    if p != main_log}
        assert set(children) <= {f"{name}-1.log", f"{name}-2.log"} and children
        shouted = "".join(children.values())
        assert all(f"shout: hello {i}" in shouted for i in range(6))
        assert "shout:" not in main_log.read_text()
        assert "Task tests.integration.app.shout" in main_log.read_text()
        assert worker.log() == ""  # nothing on stderr
    finally:
        cluster.cleanup()
        app.close()


# -- call and result ----------------------------------------------------------------------------


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Cluster]:
    """A worker on the embedded default (SQLite files in a temporary data directory)."""
    require_server("Redis", 6379)  # the ledger, which cleanup empties
    cluster = Cluster("embedded", tmp_path)
    cluster.configure(app)
    cluster.start_worker()
    yield cluster
    cluster.cleanup()
    app.close()


@pytest.mark.timeout(90)
def test_call_sends_a_task_and_result_waits_for_it(embedded: Cluster) -> None:
    sent = flowq(embedded, "call", "tests.integration.app.add", "--args", "[2]",
                 "--kwargs", '{"y": 40}')
    assert sent.returncode == 0, sent.stderr
    [task_id] = sent.stdout.split()
    done = flowq(embedded, "result", task_id, "--wait", "--timeout", "30")
    assert (done.returncode, done.stdout, done.stderr) == (0, "SUCCESS 42\n", "")

    failed_id = flowq(embedded, "call", "tests.integration.app.fail", "--args", "[1]").stdout
    done = flowq(embedded, "result", failed_id.strip(), "--wait", "--timeout", "30")
    assert done.returncode == 1
    assert done.stdout == "FAILURE ValueError: expected failure (1,)\n"


@pytest.mark.timeout(60)
def test_result_not_ready_in_time_exits_1_with_one_line(embedded: Cluster) -> None:
    # Given a task that will not finish within the --timeout
    token = uuid.uuid4().hex
    slow = flowq(embedded, "call", "tests.integration.app.gate", "--args", f'["{token}"]')
    slow_id = slow.stdout.strip()
    # When its result is waited for too briefly
    done = flowq(embedded, "result", slow_id, "--wait", "--timeout", "0.5")
    # Then that is an error (1), not an unreachable service (69), on one line
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"Error: TimeoutError: 1 of 1 results still pending after waiting 0.5s (e.g. "
        f"{slow_id}); raise the timeout or check that a worker consumes their queue"]
    embedded.open_gate(token)
    assert flowq(embedded, "result", slow_id, "--wait", "--timeout", "30").stdout == (
        "SUCCESS None\n")


# -- CLI errors ---------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    require_server("Redis", 6379)
    bare = Cluster("redis", tmp_path)
    unreachable = {"FLOWQ_BROKER_URL": "redis://:secret@127.0.0.1:1/0",
                   "FLOWQ_TEST_CONNECT_RETRIES": "1"}  # fail fast: the message is the point
    for command in (["status"], ["events", "--timeout", "1"], ["control", "pool_grow"],
                    ["purge", "-f"]):
        done = flowq(bare, *command, env=unreachable)
        assert done.returncode == 69, (command, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(
            "Error: BrokerUnavailable: could not connect to the broker at "
            "redis://:**@127.0.0.1:1/0: "), (command, lines)
        assert "refused" in lines[0] and "secret" not in done.stderr + done.stdout

    wrong = flowq(bare, "status", app_path="tests.integration.nowhere:app")
    assert wrong.returncode == 2
    assert wrong.stderr.strip().splitlines() == [
        ("Error: cannot import 'tests.integration.nowhere': No module named "
         "'tests.integration.nowhere'")]

    unknown = flowq(bare, "frobnicate")
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.splitlines() == [
        "Error: no such command 'frobnicate'; run 'python -m flowq --help' for the list"]
    assert "Traceback" not in wrong.stderr

    traced = flowq(bare, "--traceback", "status", env=unreachable)
    assert traced.returncode != 0 and "Traceback" in traced.stderr
