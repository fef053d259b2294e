"""Fixtures and helpers shared by the task-semantics tests (``test_task_*.py``).

Workers here get a unique node name (``-n``): every worker on one broker listens on the
same ``flowq`` control mailbox, so ``inspect()`` and ``rate_limit()`` are sent to one
named worker (``destination=``) and never mix up replies from other tests' workers.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from flowq.runtime import broker
from tests.integration.app import app
from tests.integration.harness import Cluster, require_server, wait_for

T = 60  # seconds any single result may take


class NamedCluster(Cluster):
    """A cluster whose workers share one unique node name, with control helpers."""

    def __init__(self, name: str, tmp: Any):
        super().__init__(name, tmp)
        self.hostname = f"sem-{uuid.uuid4().hex[:8]}@{name}"
        self.dead: dict[str, dict[str, Any]] = {}
        self.extra_queues: set[str] = set()
        #: seconds a worker gets to stop at cleanup before its process group is killed
        self.stop_timeout = 30.0

    def start_named(self, *args: str, concurrency: int = 2,
                    env: dict[str, str] | None = None) -> Any:
        """Start a worker named :attr:`hostname` and wait until it answers a ping.

        ``{queue}`` in ``args`` stands for this cluster's queue (``-Q {queue},{queue}.a``).
        """
        args = tuple(arg.format(queue=self.queue) for arg in args)
        worker = self.start_worker("-n", self.hostname, *args, concurrency=concurrency, env=env)
        wait_for(lambda: self.ask("ping"), 30, f"worker {self.hostname} never answered",
                 interval=0.2)
        return worker

    def ask(self, command: str, timeout: float = 2.0) -> Any:
        """One worker's answer to ``inspect().<command>()`` (None if it did not answer)."""
        inspect = app.control.inspect(destination=[self.hostname], timeout=timeout)
        return (getattr(inspect, command)() or {}).get(self.hostname)

    def pool_pids(self) -> set[int]:
        return set(self.ask("stats")["pool"]["processes"])

    def log(self) -> str:
        return "".join(worker.log() for worker in self.workers)

    def queue_name(self, suffix: str) -> str:
        """A queue private to this cluster (deleted at cleanup)."""
        name = f"{self.queue}.{suffix}"
        self.extra_queues.add(name)
        return name

    def dead_letter(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        """Headers of the message for ``task_id`` in ``<queue>.dead`` (waits for it)."""
        def drained() -> bool:
            with broker.connect(app.conf) as connection:
                dead = broker.dead_letter_queue_for(app.conf, self.queue)(
                    connection.default_channel)
                dead.declare()
                while (message := dead.get(no_ack=True)) is not None:
                    self.dead[message.headers.get("id")] = dict(message.headers)
            return task_id in self.dead

        wait_for(drained, timeout, f"no dead letter for {task_id}", interval=0.3)
        return self.dead[task_id]

    def cleanup(self) -> None:
        for worker in self.workers:
            worker.stop(timeout=self.stop_timeout)
        super().cleanup()
        if self.extra_queues and self.broker_url:
            _delete_queues(self.broker_url, self.extra_queues)


def _delete_queues(url: str, names: set[str]) -> None:
    everything = sorted(names | {name + broker.DEAD_LETTER_SUFFIX for name in names})
    if url.startswith("redis"):
        return  # the harness deletes every key of names holding the cluster's token
    from kombu import Connection

    with Connection(url) as connection:
        channel = connection.channel()
        for name in everything:
            for delete in ("queue_delete", "exchange_delete"):
                try:
                    getattr(channel, delete)(name)
                except Exception:  # noqa: BLE001 - never declared, or already gone
                    channel = connection.channel()


@pytest.fixture(autouse=True)
def point_app_at_cluster(request: pytest.FixtureRequest) -> None:
    """Point the test process's app at the test's cluster again before each test.

    A module's worker outlives tests that configure the app for a cluster of their own
    (``make_cluster``); pytest may run such a test between two tests of the module.
    Import this fixture into every module that uses a module-scoped cluster.
    """
    for name in ("cluster", "limited_cluster"):
        if name in request.fixturenames:
            cluster = request.getfixturevalue(name)
            if app.conf.task_default_queue != cluster.queue:
                cluster.configure(app)


def require(name: str) -> None:
    require_server("Redis", 6379)
    if name == "amqp":
        require_server("RabbitMQ", 5672)


def make_cluster(name: str, factory: pytest.TempPathFactory) -> NamedCluster:
    require(name)
    instance = NamedCluster(name, factory.mktemp(name))
    instance.configure(app)
    return instance


def running(name: str, factory: pytest.TempPathFactory, *args: str, concurrency: int = 2,
            env: dict[str, str] | None = None, queues: tuple[str, ...] = (),
            stop_timeout: float = 30.0) -> Iterator[NamedCluster]:
    """Body of a fixture: a named worker on configuration ``name``, cleaned up after.

    ``queues`` are suffixes of extra queues the test uses (``{queue}.<suffix>``), deleted
    at cleanup.
    """
    instance = make_cluster(name, factory)
    instance.stop_timeout = stop_timeout
    for suffix in queues:
        instance.queue_name(suffix)
    try:
        instance.start_named(*args, concurrency=concurrency, env=env)
        yield instance
    finally:
        instance.cleanup()
        app.close()


def kind() -> str:
    """A ledger list name private to one test."""
    return f"k-{uuid.uuid4().hex[:8]}"


def settle(cluster: Cluster, name: str, expected: int, wait: float = 0.5) -> list[str]:
    """The ledger list once it holds ``expected`` entries, after a pause to catch extras."""
    wait_for(lambda: len(cluster.ledger_list(name)) >= expected, T,
             f"ledger {name!r} never reached {expected} entries")
    time.sleep(wait)
    return cluster.ledger_list(name)


def wait_state(result: Any, state: str, timeout: float = T) -> None:
    wait_for(lambda: result.state == state, timeout, f"{result.id} never reached {state}")


def pool_replaced(cluster: NamedCluster, gone: set[int], size: int,
                  timeout: float = 20.0) -> set[int]:
    """The worker's pool pids once none of ``gone`` is left and ``size`` processes run."""
    def check() -> set[int] | None:
        pids = cluster.pool_pids()
        return pids if len(pids) == size and not pids & gone else None

    return wait_for(check, timeout, f"pool processes {sorted(gone)} were not replaced",
                    interval=0.3)


def stamps(cluster: Cluster, name: str) -> dict[str, float]:
    """``{task_id: time}`` from entries written by the ``stamp`` task."""
    return {entry.split("|")[0]: float(entry.split("|")[1])
            for entry in cluster.ledger_list(name)}
