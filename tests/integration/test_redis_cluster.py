"""Workflows on a Redis Cluster: broker and result backend on the test run's own 3 masters,
real worker processes.

A chord of 1,000 and a chain of 100 complete with their results spread over every
master; a worker consuming queues that live on different masters picks up each one's
messages; and a worker SIGKILLed (with its pool) in the middle of a run loses nothing: a
new worker finishes every task once its lease lapses, each chord body runs once (counted
in the ledger).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from flowq import Flowq, chain, chord, group
from flowq.runtime import broker
from flowq.runtime.backends.redis_cluster import RedisClusterBackend
from flowq.runtime.events import EventReceiver
from flowq.runtime.transports.redis_cluster import Transport as ClusterTransport
from tests.doc_snippets import section_snippets
from tests.integration.app import add, app, collect
from tests.integration.harness import Cluster, require_server, wait_for
from tests.redis_cluster import RedisClusterServers
from tests.reliability.checker import Ledger, assert_total_queue
from tests.reliability.conftest import task_ids
from tests.reliability.fault_tasks import body, step
from tests.reliability.faults import WorkerKill

pytestmark = pytest.mark.timeout(120)
T = 60  # seconds any one result may take


#: Seconds a SIGKILLed worker's messages stay held (``broker_lease_seconds``).
LEASE = 2.0


class RedisClusterSetup(Cluster):
    """The harness's :class:`Cluster` with broker and result backend on the Redis Cluster."""

    def __init__(self, tmp: Path, servers: RedisClusterServers):
        super().__init__("redis", tmp)
        self.name = "redis-cluster"
        self.servers = servers
        self.broker_url = servers.url
        self.backend_url = f"{servers.url}/?key_prefix={self.prefix}"
        self.env.update({"FLOWQ_BROKER_URL": self.broker_url,
                         "FLOWQ_RESULT_BACKEND": self.backend_url,
                         "FLOWQ_TEST_LEASE": str(LEASE)})

    def masters_holding(self, pattern: str) -> int:
        """How many masters hold a key matching ``<prefix><pattern>``."""
        return sum(1 for port in self.servers.ports
                   if next(redis.Redis(port=port).scan_iter(
                       match=f"{self.prefix}{pattern}", count=1000), None) is not None)

    def spread_queues(self) -> list[str]:
        """Three queues of this setup whose keys live on three different masters."""
        client = self.servers.client()
        queues: dict[str, str] = {}  # master -> queue
        for n in range(100):
            name = f"{self.queue}.{n}"
            queues.setdefault(client.get_node_from_key(f"flowq:{{{name}}}:p0").name, name)
        client.close()
        assert len(queues) == 3
        return list(queues.values())

    def cleanup(self) -> None:
        for worker in self.workers:
            worker.kill_group()
        self._delete_keys(self.ledger, self.ledger_prefix)
        self.servers.delete_matching(f"{self.prefix}*")
        self.servers.delete_matching(f"flowq:*{self.token}*")  # queues, bindings, mailboxes
        client = self.servers.client()
        types = [name for name, _ in client.hscan_iter("flowq:exchanges", match=f"*{self.token}*")]
        if types:
            client.hdel("flowq:exchanges", *types)
        client.close()


def _setup(servers: RedisClusterServers, tmp: Path) -> RedisClusterSetup:
    require_server("Redis", 6379)  # the ledger
    setup = RedisClusterSetup(tmp, servers)
    setup.configure(app)
    return setup


@pytest.fixture(scope="module")
def on_cluster(redis_cluster: RedisClusterServers, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[RedisClusterSetup]:
    """A named worker (2 prefork children, sending events) for the module, consuming the
    setup's queue and three more that live on three different masters."""
    setup = _setup(redis_cluster, tmp_path_factory.mktemp("redis-cluster"))
    setup.start_worker("-E", "-n", f"cluster-{setup.token}@%h",
                       "-Q", ",".join([setup.queue, *setup.spread_queues()]))
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


def test_one_worker_reads_queues_that_live_on_different_masters(
        on_cluster: RedisClusterSetup) -> None:
    # Given a worker consuming three queues whose keys live on three different masters
    # When tasks are sent to each, one by one
    for rounds in range(3):
        for name in on_cluster.spread_queues():
            # Then each is picked up from its own master (no read waits on another's)
            assert add.apply_async((rounds, 1), queue=name).get(timeout=T) == rounds + 1


def test_a_queue_whose_slot_moves_to_another_master_is_read_from_there(
        on_cluster: RedisClusterSetup) -> None:
    # Given a worker blocking on each of its queues' masters
    assert add.delay(1, 1).get(timeout=T) == 2
    reads = {port: _blocked_reads(port) for port in on_cluster.servers.ports}
    # When one queue's slot (with its streams) moves to another master, as a resharding
    # moves it
    source, target = on_cluster.servers.move_slot(f"flowq:{{{on_cluster.queue}}}:p0")
    # Then tasks sent to it still run, and its blocking read moved to the new master
    assert [add.delay(i, 1).get(timeout=T) for i in range(3)] == [1, 2, 3]
    wait_for(lambda: _blocked_reads(target) == reads[target] + 1
             and _blocked_reads(source) == reads[source] - 1, T,
             "the queue's blocking read to move to its new master")


def _blocked_reads(port: int) -> int:
    """Clients of the master on ``port`` blocked in XREADGROUP (a worker's reads)."""
    return sum(1 for client in redis.Redis(port=port).client_list()
               if client["cmd"] == "xreadgroup" and "b" in client["flags"])


def test_remote_control_and_events_reach_workers_and_listeners(
        on_cluster: RedisClusterSetup) -> None:
    # Given a worker sending events, and a listener (both PUB/SUB fanout on the cluster)
    with EventReceiver(app) as receiver:
        # When a task runs, and the worker is asked for its stats
        result = add.delay(20, 22)
        assert result.get(timeout=T) == 42
        replies = wait_for(lambda: app.control.inspect(timeout=1.0).stats(), T,
                           "a reply to inspect stats")
        # Then the reply comes back, and the listener saw the task succeed
        assert [name.partition("@")[0] for name in replies] == [f"cluster-{on_cluster.token}"]
        succeeded = next(event for event in receiver.events(timeout=T)
                         if event["type"] == "task-succeeded" and event["uuid"] == result.id)
        assert succeeded["result"] == "42"


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
    killed_at = time.monotonic()
    assert first.wait(10) is not None
    assert len(ledger.ends()) < 80, "the kill came after everything ran: nothing tested"
    # Then a new worker finishes every one once the dead one's lease lapses (seconds, not
    # an hour), and the chord body runs once
    fresh.start_worker(concurrency=2)
    assert [r.get(timeout=T) for r in tasks] == [i + 1 for i in range(60)]
    assert joined.get(timeout=T) == sum(i + 1 for i in range(20))
    assert time.monotonic() - killed_at < LEASE + 20
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
    with broker.connect(documented.conf) as connection:
        assert isinstance(connection.transport, ClusterTransport)
        connection.ensure_connection(max_retries=1)
    documented.close()
