"""The SQLite broker transport, driven through kombu's public API on real processes.

Subprocesses are started with the ``spawn`` method (a fresh interpreter, no inherited
SQLite handles) except in the fork tests, which are about inheriting them. Every wait is
bounded, and every test checks what arrives, including that nothing extra arrives
afterwards.
"""

from __future__ import annotations

import enum
import multiprocessing
import os
import signal
import statistics
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from typing import Any

import pytest
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.exceptions import ChannelError
from kombu.message import Message

from flowq.runtime.transports.sqlite import Transport

pytestmark = pytest.mark.timeout(90)

SPAWN = multiprocessing.get_context("spawn")
#: How long a test waits for something that should happen at once.
PROMPT = 5.0


def connect(db: Path, **options: Any) -> Connection:
    """A kombu connection to the broker file ``db`` (an absolute path: four slashes)."""
    return Connection(f"sqlite:///{db}", transport=Transport, transport_options=options)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "broker" / "broker.db"


@pytest.fixture
def conn(db: Path) -> Iterator[Connection]:
    with connect(db) as connection:
        yield connection


#: Options under which a message that was fetched but not really settled (acked or
#: dropped) would be back within half a second, so a test can tell the two apart.
SHORT_CLAIMS = {"lease_seconds": 0.5, "sweep_interval": 0.05}


def assert_nothing_more(conn: Connection, queue: str, within: float = 0.3) -> None:
    """No message is ready now nor arrives within ``within`` seconds."""
    with pytest.raises(Empty):
        conn.SimpleQueue(queue).get(timeout=within)


def join_all(*processes: multiprocessing.process.BaseProcess) -> None:
    """Wait for processes we started; kill (by pid) any that outlive the bound."""
    for process in processes:
        process.join(timeout=PROMPT * 4)
        if process.is_alive():
            os.kill(process.pid, signal.SIGKILL)  # type: ignore[arg-type]
            process.join(timeout=PROMPT)
        assert process.exitcode == 0, f"{process.name} exited with {process.exitcode}"


# -- single process: acks, rejects, restores, order, purge --------------------------------


@pytest.mark.parametrize(
    ("url", "created"),
    [("sqlite:///data/b.db", "data/b.db"), ("sqlite://", ".flowq/broker.db")],
)
def test_relative_and_default_paths_resolve_against_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, created: str
) -> None:
    monkeypatch.chdir(tmp_path)
    with Connection(url) as conn:  # the sqlite scheme is registered with kombu by flowq
        assert isinstance(conn.transport, Transport)
        conn.SimpleQueue("jobs").put({"id": 1})
        assert conn.SimpleQueue("jobs").get(timeout=PROMPT).payload == {"id": 1}
    assert (tmp_path / created).is_file()


def test_fifo_within_a_priority(conn: Connection) -> None:
    queue = conn.SimpleQueue("jobs")
    for index in range(50):
        queue.put({"index": index}, priority=index % 2 * 4)

    got = []
    for _ in range(50):
        message = queue.get(timeout=PROMPT)
        got.append(message.payload["index"])
        message.ack()
    assert got == list(range(1, 50, 2)) + list(range(0, 50, 2))


def test_no_ack_consumer_removes_messages_as_it_reads(db: Path) -> None:
    with connect(db, **SHORT_CLAIMS) as conn:
        conn.SimpleQueue("jobs").put({"id": 1})
        conn.SimpleQueue("jobs").put({"id": 2})
        assert conn.SimpleQueue("jobs", no_ack=True).get(timeout=PROMPT).payload == {"id": 1}
        fetched = Queue("jobs")(conn.channel()).get(no_ack=True)
        assert fetched is not None and fetched.payload == {"id": 2}
    with connect(db, **SHORT_CLAIMS) as other:
        assert_nothing_more(other, "jobs", within=1.0)


def test_queue_consumed_later_gets_messages_already_waiting(conn: Connection) -> None:
    # Given: a message waits on "late" while the channel idles on "early".
    Producer(conn.channel()).publish({"id": 1}, routing_key="late", declare=[Queue("late")])
    channel, got = conn.channel(), []
    with Consumer(channel, [Queue("early")]):
        with pytest.raises(TimeoutError):
            conn.drain_events(timeout=0.2)

        # When: the same channel starts consuming "late".
        with Consumer(channel, [Queue("late")], callbacks=[lambda body, m: got.append(body)]):
            conn.drain_events(timeout=PROMPT)
    assert got == [{"id": 1}]


def test_queue_deleted_elsewhere_loses_messages_and_can_be_bound_again(
    db: Path, conn: Connection
) -> None:
    # Given: a bound queue with a message, declared through this connection only.
    exchange = Exchange("shop", "direct")
    orders = Queue("orders", exchange, routing_key="new")
    channel = conn.channel()
    orders(channel).declare()
    Producer(channel, exchange=exchange).publish({"id": 1}, routing_key="new")

    # When: another connection deletes it, and this one declares it again.
    with connect(db) as other:
        Queue("orders")(other.channel()).delete()
    with pytest.raises(ChannelError):
        Queue("orders")(channel).queue_declare(passive=True)
    assert orders(channel).queue_declare().message_count == 0
    orders(channel).declare()

    # Then: the old message is gone and new ones are routed again.
    Producer(channel, exchange=exchange).publish({"id": 2}, routing_key="new")
    message = orders(channel).get()
    assert message is not None and message.payload == {"id": 2}


def test_passive_declare_sees_queues_of_other_connections(db: Path, conn: Connection) -> None:
    Queue("declared")(conn.channel()).declare()
    with connect(db) as other:
        assert Queue("declared")(other.channel()).queue_declare(passive=True).queue == "declared"
        with pytest.raises(ChannelError):
            Queue("never-declared")(other.channel()).queue_declare(passive=True)


# -- across processes ---------------------------------------------------------------------


def _publish_without_declaring(db: Path) -> None:
    """Child: publish by exchange name only; this process declares nothing."""
    with connect(db) as conn:
        producer = Producer(conn.channel(), auto_declare=False)
        producer.publish({"via": "direct"}, exchange="shop", routing_key="order.new")
        producer.publish({"via": "topic"}, exchange="events", routing_key="order.created")
        producer.publish({"via": "default"}, exchange="", routing_key="plain")


def test_producer_routes_to_queues_declared_by_another_process(db: Path, conn: Connection) -> None:
    # Given: queues and bindings declared here only.
    channel = conn.channel()
    Queue("orders", Exchange("shop", "direct"), routing_key="order.new")(channel).declare()
    Queue("audit", Exchange("events", "topic"), routing_key="order.*")(channel).declare()
    Queue("plain")(channel).declare()

    # When: another process publishes without declaring anything.
    child = SPAWN.Process(target=_publish_without_declaring, args=(db,))
    child.start()
    join_all(child)

    # Then: each queue got its message exactly once.
    for queue, via in (("orders", "direct"), ("audit", "topic"), ("plain", "default")):
        message = conn.SimpleQueue(queue).get(timeout=PROMPT)
        assert message.payload == {"via": via}
        message.ack()
        assert_nothing_more(conn, queue)


class Death(enum.Enum):
    """Ways a consumer holding an unacked message can die without closing anything."""

    SIGKILL = "sigkill"
    OS_EXIT = "os._exit"


def _hold_messages(db: Path, death: Death, count: int, report: Any) -> None:
    """Child: claim ``count`` messages with a 1 s lease, report them, then die."""
    with connect(db, lease_seconds=1.0) as conn:
        asked_at = time.time()
        queue = conn.SimpleQueue("jobs")
        held = [queue.get(timeout=PROMPT).payload["id"] for _ in range(count)]
        report.put((held, asked_at))
        report.close()
        report.join_thread()  # Flush the report: os._exit would drop it.
        if death is Death.OS_EXIT:
            os._exit(1)
        time.sleep(60)  # The parent SIGKILLs us long before this ends.


# (SIGKILL: the transport contract, test_contract.py, covers it for every transport)
@pytest.mark.parametrize("death", [Death.OS_EXIT], ids=lambda death: death.value)
def test_messages_of_a_dead_consumer_return_after_their_lease(
    db: Path, conn: Connection, death: Death
) -> None:
    # Given: a child holds three messages unacked (a running task and two prefetched).
    for index in range(3):
        conn.SimpleQueue("jobs").put({"id": index})
    report = SPAWN.Queue()
    child = SPAWN.Process(target=_hold_messages, args=(db, death, 3, report))
    child.start()
    held, asked_at = report.get(timeout=PROMPT * 4)
    assert held == [0, 1, 2]

    # When: the child dies without acking or closing.
    if death is Death.SIGKILL:
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    child.join(timeout=PROMPT)
    assert child.exitcode == (-signal.SIGKILL if death is Death.SIGKILL else 1)

    # Then: no message is ready before its claim lapses; all are ready soon after.
    with connect(db, sweep_interval=0.1) as survivor:
        queue = survivor.SimpleQueue("jobs")
        for index in range(3):
            again = queue.get(timeout=PROMPT)
            assert time.time() - asked_at >= 1.0, "redelivered before the lease lapsed"
            assert again.payload == {"id": index}
            assert again.delivery_info["redelivered"] is True
            assert again.delivery_info["delivery_count"] == 2
            again.ack()
        assert_nothing_more(survivor, "jobs")


def _collect_fanout(db: Path, queue_name: str, count: int, ready: Any, report: Any) -> None:
    """Child: bind a queue to the fanout exchange, signal ready, report what arrives."""
    with connect(db) as conn:
        queue = Queue(queue_name, Exchange("broadcast", "fanout"))
        got: list[int] = []

        def on_message(body: Any, message: Message) -> None:
            got.append(body["n"])
            message.ack()

        with Consumer(conn, [queue], callbacks=[on_message]):
            ready.set()
            deadline = time.monotonic() + PROMPT * 4
            while len(got) < count and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.1)
                except TimeoutError:
                    pass
            try:  # Anything beyond ``count`` would be a duplicate: wait a moment for it.
                conn.drain_events(timeout=0.3)
            except TimeoutError:
                pass
        report.put((queue_name, got))


def test_fanout_reaches_every_bound_queue_across_processes(db: Path, conn: Connection) -> None:
    # Given: two processes, each consuming its own queue bound to one fanout exchange.
    report = SPAWN.Queue()
    ready = [SPAWN.Event(), SPAWN.Event()]
    children = [
        SPAWN.Process(target=_collect_fanout, args=(db, name, 10, event, report))
        for name, event in zip(("left", "right"), ready)
    ]
    for child in children:
        child.start()
    for event in ready:
        assert event.wait(timeout=PROMPT * 4)

    # When: ten messages are published to the exchange.
    producer = Producer(conn.channel(), exchange=Exchange("broadcast", "fanout"))
    for n in range(10):
        producer.publish({"n": n})

    # Then: each process received each message once, in order.
    results = dict(report.get(timeout=PROMPT * 4) for _ in children)
    join_all(*children)
    assert results == {"left": list(range(10)), "right": list(range(10))}


def test_a_capped_queue_keeps_only_its_newest_fanout_messages(conn: Connection) -> None:
    # Given: a listener queue capped at 3 (as event listeners are) and an uncapped one
    broadcast = Exchange("events", "fanout")
    capped = Queue("listener", broadcast, max_length=3)
    plain = Queue("archive", broadcast)
    channel = conn.channel()
    capped(channel).declare()
    plain(channel).declare()
    # When: ten messages are broadcast while nobody reads
    producer = Producer(channel, exchange=broadcast)
    for n in range(10):
        producer.publish({"n": n})
    # Then: the capped queue holds the last three (RabbitMQ's drop-head), the other all ten
    assert [message.payload["n"] for message in drain(conn, "listener")] == [7, 8, 9]
    assert len(drain(conn, "archive")) == 10


def drain(conn: Connection, queue: str) -> list[Message]:
    """Every message waiting in ``queue``, acked."""
    simple = conn.SimpleQueue(queue)
    taken = []
    while True:
        try:
            message = simple.get(timeout=0.2)
        except Empty:
            return taken
        message.ack()
        taken.append(message)


def _produce(db: Path, producer_id: int, count: int) -> None:
    """Child: publish ``count`` messages with unique ids to the ``load`` queue."""
    with connect(db) as conn:
        producer = Producer(conn.channel(), auto_declare=False)
        for index in range(count):
            producer.publish({"id": f"{producer_id}-{index}"}, routing_key="load")


def _consume_until_stopped(db: Path, stop: Any, ledger: Any) -> None:
    """Child: ack every message of ``load`` after writing its id to the ledger."""
    with connect(db) as conn:

        def on_message(body: Any, message: Message) -> None:
            ledger.put(body["id"])
            message.ack()

        with Consumer(conn, [Queue("load")], callbacks=[on_message], prefetch_count=10):
            while not stop.is_set():
                try:
                    conn.drain_events(timeout=0.1)
                except TimeoutError:
                    pass


def _drain_ledger(ledger: Any, until: int, within: float) -> list[str]:
    """Read ids from the ledger until ``until`` arrived or ``within`` seconds passed."""
    ids: list[str] = []
    deadline = time.monotonic() + within
    while len(ids) < until and time.monotonic() < deadline:
        try:
            ids.append(ledger.get(timeout=0.1))
        except Empty:
            pass
    return ids


def test_concurrent_producers_and_consumers_deliver_each_message_once(
    db: Path, conn: Connection
) -> None:
    # Given: the queue exists; two consumer processes are running.
    Queue("load")(conn.channel()).declare()
    producers, per_producer = 4, 500
    expected = {f"{p}-{i}" for p in range(producers) for i in range(per_producer)}
    stop, ledger = SPAWN.Event(), SPAWN.Queue()
    consumers = [
        SPAWN.Process(target=_consume_until_stopped, args=(db, stop, ledger)) for _ in range(2)
    ]
    for process in consumers:
        process.start()

    # When: four producer processes publish 500 messages each, all at once.
    publishers = [
        SPAWN.Process(target=_produce, args=(db, p, per_producer)) for p in range(producers)
    ]
    for process in publishers:
        process.start()
    join_all(*publishers)

    # Then: every id is consumed exactly once, and nothing arrives afterwards.
    ids = _drain_ledger(ledger, until=len(expected), within=60)
    time.sleep(0.5)  # Room for a duplicate to show up.
    stop.set()
    join_all(*consumers)
    ids += _drain_ledger(ledger, until=len(expected), within=0.3)
    counts = Counter(ids)
    assert set(counts) == expected, f"lost: {len(expected - set(counts))}"
    assert [i for i, n in counts.items() if n > 1] == []
    assert Queue("load")(conn.channel()).queue_declare(passive=True).message_count == 0


def _measure_pickup(db: Path, count: int, ready: Any, report: Any) -> None:
    """Child: idle on ``latency`` and report, per message, receive time minus send time."""
    with connect(db) as conn:
        latencies: list[float] = []

        def on_message(body: Any, message: Message) -> None:
            latencies.append(time.time() - body["sent_at"])
            message.ack()

        with Consumer(conn, [Queue("latency")], callbacks=[on_message]):
            ready.set()
            deadline = time.monotonic() + 60
            while len(latencies) < count and time.monotonic() < deadline:
                try:
                    conn.drain_events(timeout=0.1)
                except TimeoutError:
                    pass
        report.put(latencies)


def test_pickup_latency_from_another_process(db: Path, conn: Connection) -> None:
    count = 50
    Queue("latency")(conn.channel()).declare()
    ready, report = SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=_measure_pickup, args=(db, count, ready, report))
    child.start()
    assert ready.wait(timeout=PROMPT * 4)

    producer = Producer(conn.channel(), auto_declare=False)
    for _ in range(count):
        time.sleep(0.03)  # Let the consumer go idle between messages.
        producer.publish({"sent_at": time.time()}, routing_key="latency")

    latencies = report.get(timeout=60)
    join_all(child)
    assert len(latencies) == count
    cuts = statistics.quantiles(latencies, n=20)
    p50, p95 = statistics.median(latencies), cuts[18]
    print(f"sqlite transport pickup latency: p50={p50 * 1000:.1f} ms p95={p95 * 1000:.1f} ms")
    assert p95 < 0.5  # A generous bound: this is a smoke check, not a benchmark.


def test_forked_child_reconnects_and_parent_keeps_working(db: Path, conn: Connection) -> None:
    # Given: this process has used its connection (the SQLite handle is open).
    queue = conn.SimpleQueue("jobs")
    queue.put({"from": "parent"})

    # When: a forked child publishes through the connection it inherited.
    child = multiprocessing.get_context("fork").Process(target=lambda: queue.put({"from": "child"}))
    child.start()
    join_all(child)

    # Then: both messages are there, and the parent's handle still works.
    got = []
    for _ in range(2):
        message = queue.get(timeout=PROMPT)
        got.append(message.payload["from"])
        message.ack()
    assert got == ["parent", "child"]
    queue.put({"from": "parent again"})
    assert queue.get(timeout=PROMPT).payload == {"from": "parent again"}
