"""The transport contract: what every broker transport does, written once, run on each.

Every test runs against every transport in :data:`subjects.SUBJECTS` (memory, SQLite,
Redis, Redis Cluster, RabbitMQ), through kombu's public API, on the real servers. What a
transport cannot do is declared with its reason in its subject (``cannot``) and reported as
such.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.message import Message

from flowq.runtime.broker import DEAD_LETTER_SUFFIX, REASON_HEADER
from tests.integration.harness import require_server, wait_for
from tests.runtime.transports.subjects import LEASE, SUBJECTS, Subject, hold_and_wait

pytestmark = pytest.mark.timeout(60)

SPAWN = multiprocessing.get_context("spawn")
#: How long a test waits for something that should happen at once.
PROMPT = 5.0
BEHAVIOURS = ("lease", "priority", "undecodable", "redelivered", "delivery count",
              "restore on close", "fork")


@pytest.fixture(params=list(SUBJECTS))
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Subject]:
    if request.param == "redis":
        require_server("Redis", 6379)
    if request.param == "amqp":
        require_server("RabbitMQ", 5672)
    made = SUBJECTS[request.param]
    instance = made(tmp_path, *(request.getfixturevalue(name) for name in made.fixtures))
    yield instance
    instance.close()


def needs(subject: Subject, behaviour: str) -> None:
    """Report (as a skip naming the reason) a behaviour the transport cannot show."""
    if behaviour in subject.cannot:
        pytest.skip(f"{subject.name} cannot show {behaviour}: {subject.cannot[behaviour]}")


def declared(subject: Subject, connection: Connection, what: str) -> Queue:
    queue = subject.queue(subject.queue_name(what))(connection.channel())
    queue.declare()
    return queue


def publish(connection: Connection, queue: Queue, *bodies: Any,
            priorities: tuple[int, ...] = ()) -> None:
    producer = Producer(connection.channel())
    for index, body in enumerate(bodies):
        producer.publish(body, exchange=queue.exchange, routing_key=queue.routing_key,
                         priority=priorities[index] if priorities else None)


def get(connection: Connection, queue: Queue, timeout: float = PROMPT) -> Message:
    """The next message of ``queue`` (not acknowledged), waiting up to ``timeout``."""
    bound = queue(connection.channel())
    deadline = time.monotonic() + timeout
    while True:
        message = bound.get(no_ack=False)
        if message is not None:
            return message
        assert time.monotonic() < deadline, f"nothing arrived in {queue.name} in {timeout}s"
        time.sleep(0.02)


def assert_empty(connection: Connection, queue: Queue, within: float = 0.3) -> None:
    """Nothing is ready in ``queue`` now, nor arrives within ``within`` seconds."""
    bound = queue(connection.channel())
    deadline = time.monotonic() + within
    while True:
        message = bound.get(no_ack=True)
        assert message is None, f"unexpected message {message.payload!r}"
        if time.monotonic() >= deadline:
            return
        time.sleep(0.05)


def consume(connection: Connection, queue: Queue, count: int,
            timeout: float = PROMPT) -> list[Message]:
    """``count`` messages delivered to a consumer of ``queue`` (not acknowledged)."""
    got: list[Message] = []
    with Consumer(connection.channel(), [queue], callbacks=[lambda body, m: got.append(m)]):
        deadline = time.monotonic() + timeout
        while len(got) < count and time.monotonic() < deadline:
            try:
                connection.drain_events(timeout=0.1)
            except TimeoutError:
                pass
    assert len(got) == count, f"{len(got)} of {count} messages consumed in {timeout}s"
    return got


def length(connection: Connection, queue: Queue) -> int:
    return int(queue(connection.channel()).queue_declare(passive=True).message_count)


def test_every_transport_says_what_it_cannot_do() -> None:
    for subject in SUBJECTS.values():
        assert set(subject.cannot) <= set(BEHAVIOURS), subject.name


# -- publish, consume, ack, reject, requeue ---------------------------------------------------


def test_published_messages_are_consumed_in_order_and_gone_once_acked(subject: Subject) -> None:
    with subject.connect() as connection:
        queue = declared(subject, connection, "plain")
        producer = Producer(connection.channel())
        with producer.batch():  # one round trip where the transport batches (Redis)
            for n in (1, 2, 3):
                producer.publish({"n": n}, exchange=queue.exchange,
                                 routing_key=queue.routing_key)
        got = consume(connection, queue, 3)
        assert [m.payload for m in got] == [{"n": 1}, {"n": 2}, {"n": 3}]
        for message in got:
            message.ack()
    with subject.connect() as other:  # also once a lease would have lapsed
        assert_empty(other, queue, within=LEASE + 0.5 if subject.leased else 0.3)


def test_rejected_message_is_dropped(subject: Subject) -> None:
    with subject.connect() as connection:
        queue = declared(subject, connection, "plain")
        publish(connection, queue, {"n": 1})
        get(connection, queue).reject(requeue=False)
        assert_empty(connection, queue)


def test_requeued_message_comes_back_marked_redelivered(subject: Subject) -> None:
    needs(subject, "redelivered")
    with subject.connect() as connection:
        queue = declared(subject, connection, "requeue")
        publish(connection, queue, {"n": 1})
        first = get(connection, queue)
        assert first.delivery_info.get("redelivered") is False
        first.reject(requeue=True)
        with subject.connect() as other:
            again = get(other, queue)
            assert again.payload == {"n": 1}
            assert again.delivery_info["redelivered"] is True
            if subject.counts_deliveries:
                assert first.delivery_info["delivery_count"] == 1
                assert again.delivery_info["delivery_count"] == 2
            again.ack()
            assert_empty(other, queue)


@pytest.mark.parametrize("closing", ["channel", "connection"])
def test_messages_of_a_closed_consumer_come_back_at_once(subject: Subject, closing: str) -> None:
    """Closing gives back what a consumer holds at once: long before a lease of a minute
    could lapse."""
    needs(subject, "restore on close")
    with subject.connect(lease_seconds=60) as holder:
        channel = holder.channel()
        queue = declared(subject, holder, "requeue")
        publish(holder, queue, {"n": 1})
        assert get(holder, queue).payload == {"n": 1}
        with subject.connect() as other:
            assert_empty(other, queue)
        if closing == "channel":
            channel.close()
    with subject.connect() as other:
        again = get(other, queue)
        assert again.payload == {"n": 1}
        assert again.delivery_info["redelivered"] is True
        again.ack()
        assert_empty(other, queue)


def test_a_forked_child_closing_an_inherited_connection_leaves_the_parents_messages(
        subject: Subject) -> None:
    """kombu's connection pools close inherited connections after a fork (a worker's
    pool children are forked from it): that must not give back what the parent holds."""
    needs(subject, "fork")
    with subject.connect(lease_seconds=60) as connection:
        queue = declared(subject, connection, "requeue")
        publish(connection, queue, {"n": 1})
        held = get(connection, queue)
        child = multiprocessing.get_context("fork").Process(target=connection.release)
        child.start()
        child.join(PROMPT)
        assert child.exitcode == 0
        with subject.connect() as other:
            assert_empty(other, queue)
        held.ack()
        assert_empty(connection, queue)


def test_delivery_count_is_reported_or_its_absence_explained(subject: Subject) -> None:
    needs(subject, "delivery count")
    assert subject.counts_deliveries, f"{subject.name} neither counts nor says why not"


# -- leases -------------------------------------------------------------------------------------


def test_messages_of_a_sigkilled_consumer_come_back(subject: Subject) -> None:
    """A consumer holding three messages (one running, two prefetched) is SIGKILLed: all
    three come back, marked redelivered, once its lease lapses (at once on RabbitMQ)."""
    needs(subject, "lease")
    with subject.connect() as connection:
        queue = declared(subject, connection, "lease")
        publish(connection, queue, {"n": 0}, {"n": 1}, {"n": 2})
    report = SPAWN.Queue()
    started = time.monotonic()
    child = SPAWN.Process(target=hold_and_wait,
                          args=(subject.url, dict(subject.options), queue.name, 3, report))
    child.start()
    try:
        assert report.get(timeout=30) == [{"n": 0}, {"n": 1}, {"n": 2}]
    finally:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
        child.join(PROMPT)
    with subject.connect() as survivor:
        for n in range(3):
            again = get(survivor, queue, timeout=LEASE + PROMPT)
            if subject.leased:
                assert time.monotonic() - started >= LEASE, "back before the lease lapsed"
            assert again.payload == {"n": n}
            assert again.delivery_info["redelivered"] is True
            if subject.counts_deliveries:
                assert again.delivery_info["delivery_count"] == 2
            again.ack()
        assert_empty(survivor, queue)


def test_a_live_consumer_keeps_its_lease_however_long_it_holds(subject: Subject) -> None:
    """Held three times longer than the lease by a consumer whose connection keeps
    draining events (as a worker's main loop does while a child runs the task), a message
    is never delivered to anyone else; acknowledged, it is gone. (A transport without
    leases holds it as long as the connection lives: half a second shows that.)"""
    with subject.connect() as holder, subject.connect() as other:
        queue = declared(subject, holder, "heartbeat")
        publish(holder, queue, {"n": 1})
        held = get(holder, queue)
        watcher = queue(other.channel())
        until = time.monotonic() + (3 * LEASE if subject.leased else 0.5)
        while time.monotonic() < until:
            try:
                holder.drain_events(timeout=0.05)
            except TimeoutError:
                pass
            holder.heartbeat_check()
            stolen = watcher.get(no_ack=True)
            assert stolen is None, "delivered twice while its holder lives"
        held.ack()
        assert_empty(other, queue)


# -- priority, length, purge --------------------------------------------------------------------


def test_higher_priority_first_and_fifo_within_one(subject: Subject) -> None:
    needs(subject, "priority")
    priorities = (3, 9, 0, 5, 9, 1)
    with subject.connect() as connection:
        queue = declared(subject, connection, "priority")
        publish(connection, queue, *({"n": n, "p": p} for n, p in enumerate(priorities)),
                priorities=priorities)
        order = []
        for _ in priorities:
            message = get(connection, queue)
            order.append((message.payload["p"], message.payload["n"]))
            message.ack()
        assert order == [(9, 1), (9, 4), (5, 3), (3, 0), (1, 5), (0, 2)]


def test_length_counts_ready_messages_and_purge_deletes_them(subject: Subject) -> None:
    with subject.connect() as connection:
        queue = declared(subject, connection, "purge")
        publish(connection, queue, {"n": 1}, {"n": 2}, {"n": 3})
        # (RabbitMQ without publisher confirms counts a moment later)
        wait_for(lambda: length(connection, queue) == 3, PROMPT, "three ready messages")
        held = get(connection, queue)
        assert length(connection, queue) == 2  # held (unacked) is not ready
        assert queue(connection.channel()).purge() == 2
        assert length(connection, queue) == 0
        held.ack()
        assert_empty(connection, queue)


# -- fanout ---------------------------------------------------------------------------------


def test_fanout_reaches_every_bound_queue_once(subject: Subject) -> None:
    exchange = Exchange(subject.queue_name("fanout"), "fanout", durable=False)
    with subject.connect() as first, subject.connect() as second, \
            subject.connect() as producer:
        got: dict[str, list[Any]] = {"a": [], "b": []}
        consumers = []
        for name, connection in (("a", first), ("b", second)):
            queue = Queue(subject.queue_name(f"fanout-{name}"), exchange, auto_delete=True)
            consumer = Consumer(connection.channel(), [queue], no_ack=True,
                                callbacks=[lambda body, m, name=name: got[name].append(body)])
            consumer.consume()
            consumers.append(consumer)
        for connection in (first, second):  # subscribed (PUB/SUB) before anything is sent
            try:
                connection.drain_events(timeout=0.1)
            except TimeoutError:
                pass
        sender = Producer(producer.channel(), exchange=exchange)
        for n in range(2):
            sender.publish({"n": n})
        deadline = time.monotonic() + PROMPT
        while (len(got["a"]) < 2 or len(got["b"]) < 2) and time.monotonic() < deadline:
            for connection in (first, second):
                try:
                    connection.drain_events(timeout=0.05)
                except TimeoutError:
                    pass
        for connection in (first, second):  # anything more would be a duplicate
            try:
                connection.drain_events(timeout=0.2)
            except TimeoutError:
                pass
        assert got == {"a": [{"n": 0}, {"n": 1}], "b": [{"n": 0}, {"n": 1}]}
        for consumer in consumers:
            consumer.cancel()


# -- undecodable entries ------------------------------------------------------------------------


def test_undecodable_entries_are_dead_lettered_and_the_consumer_goes_on(
        subject: Subject, caplog: pytest.LogCaptureFixture) -> None:
    """An entry of every kind the layout can hold that is not a kombu message: each goes
    to ``<queue>.dead`` with the reason, one log line each, and the good message behind
    them is delivered."""
    needs(subject, "undecodable")
    with subject.connect() as connection:
        queue = declared(subject, connection, "dead-letter")
        for _, plant in subject.undecodable.values():
            plant(queue.name)
        publish(connection, queue, {"n": "good"})
        with caplog.at_level(logging.ERROR, logger="flowq.broker"):
            (good,) = consume(connection, queue, 1)
        assert good.payload == {"n": "good"}
        good.ack()
        dead = Queue(queue.name + DEAD_LETTER_SUFFIX)
        reasons = []
        for _ in subject.undecodable:
            letter = get(connection, dead)
            reasons.append(letter.headers[REASON_HEADER])
            letter.ack()
        assert_empty(connection, dead)
        for kind, (says, _) in subject.undecodable.items():
            assert any(says in reason for reason in reasons), (kind, reasons)
        assert all(reason.startswith("UndecodableEntry: ") for reason in reasons)
        lines = [r for r in caplog.records if r.name == "flowq.broker"]
        assert len(lines) == len(subject.undecodable), [r.getMessage() for r in lines]
        assert_empty(connection, queue)
