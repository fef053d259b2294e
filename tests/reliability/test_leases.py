"""Leases on flowq's own transports (Redis, embedded), on real workers and real servers.

A worker's hold on the messages it took lasts while it heartbeats (``broker_lease_seconds``,
2 s here): a worker killed outright has its messages taken over by another worker once the
lease lapses; a live worker keeps them however long its tasks run. Also here: undecodable
entries of every kind a layout can hold, met by a real worker, and the upgrade from the
layout of kombu's Redis list transport.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from kombu import Connection, Producer

from flowq import _state, chord
from flowq.runtime import broker
from flowq.runtime.keys import KombuListKeys
from tests.doc_snippets import section_snippets
from tests.integration.app import app
from tests.reliability.checker import Ledger, assert_total_queue
from tests.reliability.conftest import (
    LEASE,
    dead_letters,
    recording_advancer,
    release,
    send_workflow,
    task_ids,
)
from tests.reliability.fault_tasks import body, step
from tests.reliability.faults import TaskFault, wait_for
from tests.runtime.transports.subjects import redis_plants, sqlite_plants

pytestmark = pytest.mark.timeout(120)
T = 30
Fault = TaskFault.Method
LEASED = ["redis", "embedded"]
ENV = {"FLOWQ_TEST_LEASE": str(LEASE)}


def kind() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("fault_cluster", LEASED, indirect=True)
def test_killed_main_process_task_runs_again_within_the_lease(fault_cluster):
    """The main process of a worker is SIGKILLed while a chord member (late ack) runs:
    the member runs again on a new worker within the lease and a few seconds, the chord
    completes and its body runs once, even when the orphaned first run finishes too."""
    first = fault_cluster.start(env=ENV, concurrency=2)
    k, kb = kind(), kind()
    ledger, bodies = Ledger(fault_cluster, k), Ledger(fault_cluster, kb)
    token = uuid.uuid4().hex
    _, result = send_workflow(chord(
        [step.s(1, kind=k), step.s(2, kind=k, fault=Fault.BLOCK, token=token),
         step.s(3, kind=k)], body.s(kind=kb)))
    wait_for(lambda: len(ledger.ends()) == 2 and len(ledger.starts()) == 3, T,
             "two members done and the blocked one running")
    os.kill(first.pid, signal.SIGKILL)  # the main process only: its children linger
    killed_at = time.monotonic()
    first.wait(10)
    fault_cluster.start(env=ENV, concurrency=2)

    again = wait_for(lambda: [s for s in ledger.starts() if s.attempt == 2], T,
                     "the blocked member to run again")
    assert time.monotonic() - killed_at < LEASE + 8, "not back within the lease"
    assert again[0].pid != ledger.starts()[1].pid
    assert result.get(timeout=T) == 2 + 3 + 4
    release(fault_cluster, token)  # the orphaned first run finishes now
    members = task_ids(result.parent)
    completed = ledger.settle(members, quiet=1.5)
    assert_total_queue(members, completed, max_completions={again[0].task_id: 2})
    assert_total_queue([result.id], bodies.settle([result.id], quiet=0))


def test_a_task_longer_than_the_lease_runs_once_on_a_live_worker(fault_cluster):
    """A late-acked task three leases long, on a live worker, with another worker idle
    beside it: the heartbeat keeps the message, nobody runs it twice. (Redis; for the
    embedded broker, the transport contract's heartbeat test.)"""
    fault_cluster.start(env=ENV, concurrency=1)
    k = kind()
    ledger = Ledger(fault_cluster, k)
    long = step.apply_async((1,), {"kind": k, "sleep": 3 * LEASE})
    wait_for(ledger.starts, T, "the long task to start")
    fault_cluster.start(env=ENV, concurrency=1)  # idle, looking for lapsed messages
    assert long.get(timeout=T) == 2
    completed = ledger.settle([long.id], quiet=LEASE + 1)
    assert len(ledger.starts()) == 1
    assert_total_queue([long.id], completed)


@pytest.mark.parametrize("fault_cluster", LEASED, indirect=True)
def test_undecodable_entries_are_dead_lettered_and_the_worker_goes_on(fault_cluster):
    """Entries of every kind the layout can hold that are not messages, in the queue
    ahead of a task: each is dead-lettered with its reason (one log line), the worker
    stays up and runs the task."""
    worker = fault_cluster.start(concurrency=1)
    if fault_cluster.name == "redis":
        plants = redis_plants(redis.Redis.from_url(fault_cluster.broker_url))
    else:
        plants = sqlite_plants(Path(fault_cluster.data_dir) / "broker.db")
    k = kind()
    for _, plant in plants.values():
        plant(fault_cluster.queue)
    good = step.apply_async((1,), {"kind": k})
    assert good.get(timeout=T) == 2
    letters = dead_letters(fault_cluster, len(plants))
    reasons = [letter.headers[broker.REASON_HEADER] for letter in letters]
    for kind_, (says, _) in plants.items():
        assert any(says in reason for reason in reasons), (kind_, reasons)
    assert worker.alive()
    assert worker.log().count("Undecodable message") == len(plants)


def _kombu_consumer_dies_holding(url: str, queue: str, count: int, report: Any) -> None:
    """Child: take ``count`` messages with kombu's Redis list transport (an earlier flowq
    worker), report, and wait to be SIGKILLed with them unacked."""
    with Connection(url, transport="kombu.transport.redis:Transport",
                    transport_options={"priority_steps": list(range(10))}) as connection:
        bound = broker.task_queue(queue)(connection.channel())
        held = []
        while len(held) < count:
            message = bound.get(no_ack=False)
            if message is None:
                time.sleep(0.02)
            else:
                held.append(message.headers["id"])
        report.put(held)
        time.sleep(60)


def test_messages_left_in_kombus_list_layout_are_run_after_the_upgrade(fault_cluster):
    """Messages an earlier flowq left in kombu's Redis list layout: waiting in the lists
    of three priority steps, and two held unacked by a worker that was killed. A worker
    of this version runs every one of them, once, and the old keys are emptied."""
    k = kind()
    ledger = Ledger(fault_cluster, k)
    sent: list[Any] = []
    advancer = recording_advancer(app.runtime.backend, sent)
    for i, priority in enumerate([None, 9, 0, 5, None, 9]):
        signature = step.s(i, kind=k)
        workflow = app.compile(signature if priority is None else signature.set(
            priority=priority))
        advancer.start(app.runtime.workflows.carry(workflow), workflow.seed, None)
    ids = [message.id for message in sent]
    # Given: the earlier version's publisher (kombu's transport, priorities turned around)
    with Connection(fault_cluster.broker_url, transport="kombu.transport.redis:Transport",
                    transport_options={"priority_steps": list(range(10))}) as old:
        producer = Producer(old.channel())
        queue = broker.task_queue(fault_cluster.queue)
        for message in sent:
            producer.publish(message.body, exchange=queue.exchange, routing_key=queue.name,
                             headers=message.headers, content_type=message.content_type,
                             content_encoding=message.content_encoding, declare=[queue],
                             priority=9 - (message.priority or 0))
    # ... and an earlier worker killed holding two of them
    report = multiprocessing.get_context("spawn").Queue()
    child = multiprocessing.get_context("spawn").Process(
        target=_kombu_consumer_dies_holding,
        args=(fault_cluster.broker_url, fault_cluster.queue, 2, report))
    child.start()
    try:
        held = report.get(timeout=T)
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(10)
    client = redis.Redis.from_url(fault_cluster.broker_url)
    lists = KombuListKeys().queues(fault_cluster.queue)
    assert sum(client.llen(key) for key in lists) == 4 and client.hlen("unacked") >= 2
    time.sleep(LEASE)  # the killed worker had its lease's time to finish them

    # When: a worker of this version starts on the same queue
    fault_cluster.start(env=ENV, concurrency=2)

    # Then: all six run, the two that were held counted as redelivered, once each
    assert [app.AsyncResult(task_id).get(timeout=T) for task_id in ids] == [
        i + 1 for i in range(6)]
    completed = ledger.settle(ids, quiet=1.0)
    assert_total_queue(ids, completed)
    assert sum(client.llen(key) for key in lists) == 0
    tags = [tag for tag, record in client.hgetall("unacked").items()
            if fault_cluster.queue.encode() in record]
    assert tags == [], "kombu's unacked records of the queue are left"
    assert set(held) <= set(ids)
    client.delete(f"_kombu.binding.{fault_cluster.queue}")


def test_the_documented_lease_setting_reaches_the_transport():
    namespace: dict[str, Any] = {}
    for snippet in section_snippets("reliability.md", "Leases (Redis and the embedded broker)"):
        exec(snippet, namespace)  # noqa: S102 - the docs' own example
    documented = namespace["app"]
    try:
        with broker.connect(documented.conf) as connection:
            assert connection.default_channel.lease_seconds == 30
    finally:
        documented.close()
        _state.set_current_app(app)
