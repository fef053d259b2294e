"""Workflows on a Redis Cluster: the test run's own 3 masters, real worker processes.

A chord of 1,000 and a chain of 100 complete with their results spread over every
master, and a worker SIGKILLed (with its pool) in the middle of a run loses nothing: a new
worker finishes every task, each chord body runs once (counted in the ledger).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from flowq import Flowq, chain, chord, group
from flowq.runtime.backends.redis_cluster import RedisClusterBackend
from tests.doc_snippets import section_snippets
from tests.integration.app import add, app, collect
from tests.integration.harness import AMQP_URL, Cluster, require_server, wait_for
from tests.redis_cluster import RedisClusterServers
from tests.reliability.checker import Ledger, assert_total_queue
from tests.reliability.conftest import task_ids
from tests.reliability.fault_tasks import body, step
from tests.reliability.faults import WorkerKill

pytestmark = pytest.mark.timeout(120)
T = 60  # seconds any one result may take


class RedisClusterSetup(Cluster):
    """The harness's :class:`Cluster` with its result backend on the Redis Cluster."""

    def __init__(self, tmp: Path, servers: RedisClusterServers, broker_url: str):
        super().__init__("amqp", tmp)
        self.name = "redis-cluster"
        self.servers = servers
        self.broker_url = broker_url
        self.backend_url = f"{servers.url}/?key_prefix={self.prefix}"
        self.env.update({"FLOWQ_BROKER_URL": self.broker_url,
                         "FLOWQ_RESULT_BACKEND": self.backend_url})

    def masters_holding(self, pattern: str) -> int:
        """How many masters hold a key matching ``<prefix><pattern>``."""
        return sum(1 for port in self.servers.ports
                   if next(redis.Redis(port=port).scan_iter(
                       match=f"{self.prefix}{pattern}", count=1000), None) is not None)

    def cleanup(self) -> None:
        for worker in self.workers:
            worker.kill_group()
        self._delete_keys(self.ledger, self.ledger_prefix)
        self.servers.delete_prefix(self.prefix)
        if self.broker_url.startswith("amqp"):
            self._delete_amqp_queues()


def _setup(servers: RedisClusterServers, tmp: Path) -> RedisClusterSetup:
    require_server("Redis", 6379)  # the ledger
    require_server("RabbitMQ", 5672)
    setup = RedisClusterSetup(tmp, servers, AMQP_URL)
    setup.configure(app)
    return setup


@pytest.fixture(scope="module")
def on_cluster(redis_cluster: RedisClusterServers, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RedisClusterSetup]:
    """A worker (2 prefork children) with its results on the cluster, for the module."""
    setup = _setup(redis_cluster, tmp_path_factory.mktemp("redis-cluster"))
    setup.start_worker()
    yield setup
    setup.cleanup()
    app.close()


@pytest.fixture
def fresh(redis_cluster: RedisClusterServers, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[RedisClusterSetup]:
    """A setup of the test's own, no worker started."""
    setup = _setup(redis_cluster, tmp_path_factory.mktemp("redis-cluster-fresh"))
    yield setup
    setup.cleanup()
    app.close()


def test_a_chord_of_1000_completes_with_results_on_every_master(
        on_cluster: RedisClusterSetup) -> None:
    bodies = f"bodies-{uuid.uuid4().hex[:8]}"
    result = chord(group(add.s(i, i) for i in range(1000)), collect.s(kind=bodies)).delay()
    assert result.get(timeout=T) == [2 * i for i in range(1000)]
    wait_for(lambda: on_cluster.ledger_list(bodies), 10, "the chord body's ledger entry")
    time.sleep(0.5)  # a duplicate body would show up by now
    assert on_cluster.ledger_list(bodies) == [result.id]
    assert on_cluster.masters_holding("r:*") == 3


def test_a_chain_of_100_completes(on_cluster: RedisClusterSetup) -> None:
    workflow = chain(add.s(0, 1), *(add.s(1) for _ in range(99)))
    assert workflow.delay().get(timeout=T) == 100


def test_a_worker_sigkilled_mid_run_loses_nothing(fresh: RedisClusterSetup) -> None:
    # Given late-acked tasks and a chord of them, running on a worker
    first = fresh.start_worker(concurrency=2)
    k = f"k-{uuid.uuid4().hex[:8]}"
    ledger = Ledger(fresh, k)
    tasks = [step.apply_async((i,), {"kind": k, "sleep": 0.05}) for i in range(60)]
    joined = chord([step.s(i, kind=k, sleep=0.05) for i in range(20)],
                   body.s(kind=f"{k}:bodies")).delay()
    # When the worker and its pool are SIGKILLed once some have finished
    wait_for(lambda: len(ledger.ends()) >= 10, T, "ten tasks to finish")
    WorkerKill.apply(first, WorkerKill.Method.SIGKILL)
    assert first.wait(10) is not None
    assert len(ledger.ends()) < 80, "the kill came after everything ran: nothing tested"
    # Then a new worker finishes every one, and the chord body runs once
    fresh.start_worker(concurrency=2)
    assert [r.get(timeout=T) for r in tasks] == [i + 1 for i in range(60)]
    assert joined.get(timeout=T) == sum(i + 1 for i in range(20))
    members = [task_id for task_id in task_ids(joined) if task_id != joined.id]
    assert len(members) == 20
    completed = ledger.settle([r.id for r in tasks] + members, quiet=1.0)
    # a task whose end was written just before the kill may run again (acks_late)
    assert_total_queue([r.id for r in tasks] + members, completed, max_completions=2)
    assert len(fresh.ledger_list(f"{k}:bodies:ends")) == 1


def test_the_documented_configuration_works(redis_cluster: RedisClusterServers) -> None:
    namespace = {"Flowq": Flowq}
    for snippet in section_snippets("runtime.md", "Redis Cluster"):
        seeds = "redis-cluster://10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000"
        exec(snippet.replace(seeds, redis_cluster.url), namespace)  # noqa: S102 - the docs'
    documented = namespace["app"]
    backend = documented.backend
    assert isinstance(backend, RedisClusterBackend) and backend.keys.prefix == "proj:"
    backend.store("doc-check", "SUCCESS", b"")
    assert backend.get("doc-check") is not None
    backend.forget(["doc-check"])
    documented.close()
