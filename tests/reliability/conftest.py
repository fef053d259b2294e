"""Fixtures of the reliability suite: fault clusters, a private Redis, raw messages.

A :class:`FaultCluster` is the integration harness's :class:`Cluster` on a Redis
database of its own (``FAULT_DB``). Fault workers that must see a killed worker's messages
come back run with a lease of a few seconds (``LEASE``). Workers are told apart by a unique
``-n`` hostname, and are killed (not drained) at teardown: nothing in a fault test depends
on a graceful stop it did not ask for.
"""

from __future__ import annotations

import contextlib
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.message import Message

from flowq.result import GroupResult
from flowq.runtime import broker
from tests.integration.app import app
from tests.integration.harness import AMQP_URL, REDIS_URL, Cluster, WorkerProcess, require_server
from tests.reliability.faults import PrivateRedis, wait_for

#: The Redis database of every fault cluster (the integration suite uses 4, 5 and 15).
FAULT_DB = 9
CONFIGS: dict[str, tuple[str | None, str | None]] = {
    "redis": (f"{REDIS_URL}/{FAULT_DB}", f"{REDIS_URL}/{FAULT_DB}?key_prefix={{prefix}}"),
    "amqp": (AMQP_URL, f"{REDIS_URL}/{FAULT_DB}?key_prefix={{prefix}}"),
    "embedded": (None, None),
}
#: The lease (``broker_lease_seconds``) of workers that must see a killed worker's
#: messages come back.
LEASE = 2.0


class FaultCluster(Cluster):
    """A :class:`Cluster` on the fault database (or any broker/backend URL given)."""

    def __init__(self, name: str, tmp: Any, broker_url: str | None = None,
                 backend_url: str | None = None):
        super().__init__(name if name in ("redis", "amqp", "embedded") else "redis", tmp)
        self.name = name
        default_broker, default_backend = CONFIGS.get(name, (None, None))
        self.broker_url = broker_url or default_broker
        template = backend_url or default_backend
        self.backend_url = template.format(prefix=self.prefix) if template else None
        for key, value in (("FLOWQ_BROKER_URL", self.broker_url),
                           ("FLOWQ_RESULT_BACKEND", self.backend_url)):
            self.env.pop(key, None)
            if value:
                self.env[key] = value

    def start(self, *args: str, env: dict[str, str] | None = None, concurrency: int = 2,
              wait: bool = True) -> WorkerProcess:
        """A worker with a unique hostname (``worker.hostname``), ready to consume."""
        name = f"fault-{uuid.uuid4().hex[:8]}"
        worker = self.start_worker("-n", f"{name}@%h", *args, env=env,
                                   concurrency=concurrency, wait=wait)
        worker.hostname = f"{name}@{socket.gethostname()}"  # type: ignore[attr-defined]
        return worker

    def cleanup(self) -> None:
        for worker in self.workers:
            worker.kill_group()
        try:
            super().cleanup()
        except (redis.ConnectionError, OSError):
            pass  # a private server already stopped: nothing of ours is left in it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The stress tier runs only when asked for (``-m stress``): a plain ``pytest`` run,
    as in CI, stays the fast tier."""
    if "stress" in (config.getoption("markexpr") or ""):
        return
    here = Path(__file__).parent
    skip = pytest.mark.skip(reason="stress tier: run with -m stress")
    for item in items:
        if "stress" in item.keywords and here in Path(str(item.fspath)).parents:
            item.add_marker(skip)


def require_servers(name: str) -> None:
    require_server("Redis", 6379)
    if name == "amqp":
        require_server("RabbitMQ", 5672)


@pytest.fixture
def fault_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[FaultCluster]:
    """A fault cluster (``redis`` unless parametrized indirectly); no worker started."""
    name = getattr(request, "param", "redis")
    require_servers(name)
    instance = FaultCluster(name, tmp_path_factory.mktemp(name))
    instance.configure(app)
    yield instance
    instance.cleanup()
    app.close()


@pytest.fixture
def private_redis(tmp_path: Any) -> Iterator[PrivateRedis]:
    """A redis-server of the test's own, started; stopped (by pid) afterwards."""
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_cluster(private_redis: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[FaultCluster]:
    """Broker and result backend both on the test's private Redis."""
    instance = FaultCluster("private", tmp_path_factory.mktemp("private"),
                            broker_url=private_redis.url,
                            backend_url=private_redis.url + "?key_prefix={prefix}")
    instance.configure(app)
    yield instance
    instance.cleanup()
    app.close()


@pytest.fixture(params=["redis", "sqlite", "memory"])
def any_backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[Any]:
    """Each result backend implementation, empty, on its own keys or file."""
    from flowq.runtime.backends.memory import MemoryBackend
    from flowq.runtime.backends.redis import RedisBackend
    from flowq.runtime.backends.sqlite import SqliteBackend

    if request.param == "redis":
        prefix = f"flowq-test-any-{uuid.uuid4().hex[:8]}:"
        instance: Any = RedisBackend(f"{REDIS_URL}/{FAULT_DB}", key_prefix=prefix,
                                     retry_delay=0.01)
        yield instance
        client = redis.Redis.from_url(f"{REDIS_URL}/{FAULT_DB}")
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)
        instance.close()
    elif request.param == "sqlite":
        instance = SqliteBackend(str(tmp_path / "results.db"))
        yield instance
        instance.close()
    else:
        yield MemoryBackend(f"memory://any-{uuid.uuid4().hex}")


@pytest.fixture
def conf() -> Iterator[Any]:
    """``app.conf`` for the test to change; every change is undone afterwards."""
    saved = dict(app.conf._values)
    yield app.conf
    app.close()
    app.conf._values.clear()
    app.conf._values.update(saved)
    app._reset_runtime()


@contextlib.contextmanager
def scratch_app(*args: Any, **kwargs: Any) -> Iterator[Any]:
    """A throwaway Flowq app; the integration app is the current app again afterwards
    (creating an app makes it the current one)."""
    from flowq import Flowq, _state

    other = Flowq(*args, **kwargs)
    try:
        yield other
    finally:
        other.close()
        _state.set_current_app(app)


# -- workflows ------------------------------------------------------------------------------


def send_workflow(canvas: Any) -> tuple[Any, Any]:
    """Send ``canvas`` as ``app.send`` does, returning its compiled workflow too (for
    node ids) and the result handle."""
    workflow = app.compile(canvas)
    runtime = app.runtime
    runtime.advancer.start(runtime.workflows.carry(workflow), workflow.seed, None)
    return workflow, app.result_for(workflow)


def recording_advancer(backend: Any, sent: list[Any]) -> Any:
    """An advancer over ``backend`` whose 'broker' is the list ``sent`` (messages are
    built as the app builds them)."""
    from flowq.runtime.advance import Advancer
    from flowq.runtime.eager import EagerRuntime

    return Advancer(backend, app.result_codec, EagerRuntime(app).builder, sent.extend, None)


def task_ids(handle: Any) -> list[str]:
    """Every task id reachable from a result handle (through parents and group members)."""
    found: list[str] = []
    seen: set[str] = set()
    stack = [handle]
    while stack:
        current = stack.pop()
        if current is None or (current.id, type(current)) in seen:
            continue
        seen.add((current.id, type(current)))  # type: ignore[arg-type]
        if isinstance(current, GroupResult):
            stack.extend(current.results)
        else:
            found.append(current.id)
        stack.append(current.parent)
    return found


# -- raw messages ---------------------------------------------------------------------------


def task_headers(task: str, /, **extra: Any) -> dict[str, Any]:
    """Valid protocol-1 headers for a lone ``task`` (override or drop fields via ``extra``;
    a value of ``...`` removes the field)."""
    task_id = str(uuid.uuid4())
    headers: dict[str, Any] = {"flowq": 1, "id": task_id, "task": task, "root_id": task_id}
    for key, value in extra.items():
        if value is ...:
            headers.pop(key, None)
        else:
            headers[key] = value
    return headers


def publish_raw(target: Cluster, body: bytes, headers: Any,
                content_type: str | None = "application/json",
                content_encoding: str | None = "utf-8") -> None:
    """Put a message on the target's queue exactly as given, like a foreign publisher."""
    with broker.connect(app.conf) as connection:
        channel = connection.channel()
        broker.task_queue(target.queue, app.conf.task_queue_max_priority)(channel).declare()
        message = channel.prepare_message(body, None, content_type, content_encoding, headers,
                                          {"delivery_mode": 2})
        channel.basic_publish(message, exchange=target.queue, routing_key=target.queue)


def dead_letters(target: Cluster, count: int, timeout: float = 20.0,
                 quiet: float = 0.5) -> list[Message]:
    """Take ``count`` messages from the target's dead-letter queue, then check that no
    more arrive for ``quiet`` seconds (a requeue loop would keep adding copies)."""
    got: list[Message] = []
    with broker.connect(app.conf) as connection:
        channel = connection.channel()
        queue = broker.dead_letter_queue(target.queue)(channel)
        queue.declare()
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            message = queue.get(no_ack=True)
            if message is None:
                time.sleep(0.05)
            else:
                got.append(message)
        assert len(got) == count, f"{len(got)} of {count} messages dead-lettered in {timeout}s"
        time.sleep(quiet)
        extra = queue.get(no_ack=True)
        assert extra is None, f"an extra dead letter arrived: {extra.headers}"
    return got


def queue_size(target: Cluster) -> int:
    """Messages waiting in the target's task queue."""
    with broker.connect(app.conf) as connection:
        channel = connection.channel()
        queue = broker.task_queue(target.queue, app.conf.task_queue_max_priority)(channel)
        return int(queue.queue_declare().message_count)


def dead_letter_count(target: Cluster) -> int:
    """Messages waiting in the cluster's dead-letter queue (none taken)."""
    with broker.connect(app.conf) as connection:
        channel = connection.channel()
        return int(broker.dead_letter_queue(target.queue)(channel).queue_declare().message_count)


def ran_or_dead_lettered(target: Cluster, kind: str, timeout: float = 10.0) -> None:
    """Wait until a task of ``kind`` started (ledger) or a message was dead-lettered."""
    wait_for(lambda: target.ledger_list(f"{kind}:starts") or dead_letter_count(target), timeout,
             "the message to run or be dead-lettered")


def redeliveries_counted(target: Cluster, task_id: str, retries: int = 0) -> int:
    """How many redeliveries of ``task_id`` the worker counted in the backend for
    ``task_max_deliveries`` (a first delivery is not counted: the broker says it is one)."""
    key = f"deliveries:{task_id}:{retries}"
    if target.backend_url and target.backend_url.startswith("redis"):
        client = redis.Redis.from_url(target.backend_url.split("?")[0])
        return int(client.get(f"{target.prefix}n:{key}") or 0)
    import sqlite3

    with sqlite3.connect(f"{target.data_dir}/results.db") as db:
        row = db.execute("SELECT value FROM counters WHERE key = ?", (key,)).fetchone()
    return int(row[0]) if row else 0


def release(target: Cluster, token: str) -> None:
    """Let a task blocked with ``fault="block", token=token`` carry on."""
    target.ledger.set(f"{target.ledger_prefix}release:{token}", 1)


def wait_result_state(result: Any, states: set[str], timeout: float = 20.0) -> str:
    return wait_for(lambda: result.state if result.state in states else None, timeout,
                    f"{result.id} to reach {sorted(states)}")
