"""The transports the contract suite (``test_contract.py``) runs against, one entry each.

A :class:`Subject` says how to connect to one transport with short leases, how to plant an
undecodable entry of every kind its layout can hold, and what it cannot do, with the reason
(``cannot``): the suite reports those per transport instead of skipping in silence. Adding a
transport is a subclass with ``name``, ``url``, ``cannot`` and ``undecodable`` (and the
session fixtures it is built on, ``fixtures``), and a line in :data:`SUBJECTS`.

Also here: :func:`hold_and_wait`, the child process that takes messages and waits to be
SIGKILLed (a module of its own, so the ``spawn`` start method can import it).
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import redis
from kombu import Connection, Exchange, Queue

import flowq.runtime  # noqa: F401 - registers flowq's transports with kombu
from flowq.runtime.keys import BrokerKeys, KombuListKeys

REDIS_DB = 6  # this suite's own database
LEASE = 1.0
#: Transport options of the leased transports: short leases, frequent sweeps.
SHORT = {"lease_seconds": LEASE, "sweep_interval": 0.1}


def envelope(body: str = "e30=", **properties: Any) -> dict[str, Any]:
    """A kombu message dict as flowq's transports store it (body: base64 of ``{}``)."""
    return {"body": body, "content-type": "application/json", "content-encoding": "utf-8",
            "headers": {}, "properties": {"body_encoding": "base64", "delivery_info": {},
                                          "priority": 0, **properties}}


#: Undecodable payloads every envelope-storing layout can hold:
#: kind -> (what the dead letter's reason says, the raw bytes).
BAD_PAYLOADS: dict[str, tuple[str, bytes]] = {
    "not UTF-8": ("not UTF-8", b"\xff\xfe{not text"),
    "not JSON": ("not JSON", b"{truncated"),
    "not an object": ("a JSON list, not an object", b"[1, 2, 3]"),
    "properties not an object": ("'properties' is not an object",
                                 json.dumps({**envelope(), "properties": 7}).encode()),
    "body not base64": ("body is not valid base64",
                        json.dumps(envelope(body="@@@ not base64 @@@")).encode()),
    "unknown body_encoding": ("unknown body_encoding 'rot13'",
                              json.dumps(envelope(body_encoding="rot13")).encode()),
}


Plants = dict[str, tuple[str, Callable[[str], Any]]]


def sqlite_plants(path: Path) -> Plants:
    """Ways to put an undecodable row in a queue of the SQLite broker file ``path``:
    kind -> (what the dead letter's reason says, plant(queue))."""
    def insert(queue: str, raw: bytes) -> None:
        value: bytes | str = raw
        try:
            value = raw.decode("utf-8")  # stored as TEXT, as the transport stores it
        except UnicodeDecodeError:
            pass  # stored as bytes: what a foreign writer would leave
        with sqlite3.connect(path) as db:
            db.execute("INSERT INTO messages (queue, priority, payload) VALUES (?, 0, ?)",
                       (queue, value))

    return {kind: (says, lambda queue, raw=raw: insert(queue, raw))
            for kind, (says, raw) in BAD_PAYLOADS.items()}


def redis_plants(client: redis.Redis) -> Plants:
    """Ways to put an undecodable entry in a queue of flowq's Redis layout (and of the
    kombu layout it drains): kind -> (what the reason says, plant(queue))."""
    keys = BrokerKeys()
    plants: Plants = {kind: (says, lambda queue, raw=raw: client.xadd(
        keys.stream(queue, 0), {"m": raw})) for kind, (says, raw) in BAD_PAYLOADS.items()}
    plants["entry without a message"] = (
        "not a flowq stream entry", lambda queue: client.xadd(keys.stream(queue, 0),
                                                               {"job": "42"}))
    plants["earlier layout, not JSON"] = (  # a list of kombu's list transport
        "not JSON", lambda queue: client.lpush(KombuListKeys().queue(queue, 0),
                                               b"{left by kombu"))
    return plants


class Subject:
    """One transport under the contract."""

    name: ClassVar[str]
    #: behaviour -> why this transport cannot show it
    cannot: ClassVar[dict[str, str]] = {}
    #: kind of undecodable entry -> (what the reason says, how to plant one in a queue)
    undecodable: Plants
    #: whether ``delivery_info`` counts deliveries (``delivery_count``)
    counts_deliveries: ClassVar[bool] = False
    #: whether a consumer's hold is a lease (lapses when it stops renewing)
    leased: ClassVar[bool] = False
    #: session fixtures the subject is built with, after ``tmp`` (servers it starts)
    fixtures: ClassVar[tuple[str, ...]] = ()

    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.token = uuid.uuid4().hex[:8]
        self.undecodable = {}

    @property
    def url(self) -> str:
        raise NotImplementedError

    options: ClassVar[dict[str, Any]] = {}

    def connect(self, **options: Any) -> Connection:
        return Connection(self.url, transport_options={**self.options, **options})

    def queue_name(self, what: str) -> str:
        return f"contract-{self.token}-{what}"

    def queue(self, name: str) -> Queue:
        """A durable priority queue behind a direct exchange of its name (as flowq's)."""
        return Queue(name, Exchange(name, "direct"), routing_key=name,
                     queue_arguments={"x-max-priority": 9})

    def close(self) -> None:
        pass


class Memory(Subject):
    name = "memory"
    cannot = {
        "lease": "one process only: a SIGKILL takes the broker with it, nothing to come back",
        "priority": "kombu's memory transport keeps a plain FIFO per queue",
        "undecodable": "messages are Python objects handed between threads, never bytes",
        "redelivered": "kombu's memory transport does not mark redeliveries",
        "delivery count": "kombu's memory transport does not count deliveries",
        "restore on close": "closing a connection empties kombu's in-process broker",
    }

    @property
    def url(self) -> str:
        return "memory://"


class Sqlite(Subject):
    name = "sqlite"
    counts_deliveries = leased = True
    options = SHORT

    def __init__(self, tmp: Path):
        super().__init__(tmp)
        self.path = tmp / "broker.db"
        self.undecodable = sqlite_plants(self.path)

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"


class Redis(Subject):
    name = "redis"
    counts_deliveries = leased = True
    options = SHORT

    def __init__(self, tmp: Path):
        super().__init__(tmp)
        self.client = self.make_client()
        self.undecodable = redis_plants(self.client)

    def make_client(self) -> Any:
        return redis.Redis.from_url(self.url)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:6379/{REDIS_DB}"

    def close(self) -> None:
        keys = list(self.client.scan_iter(match=f"*contract-{self.token}*", count=1000))
        if keys:
            self.client.delete(*keys)
        self.client.close()


class RedisCluster(Redis):
    """flowq's Redis transport on the test run's own 3-master cluster (tests/conftest.py)."""

    name = "redis-cluster"
    fixtures = ("redis_cluster",)

    def __init__(self, tmp: Path, servers: Any):
        self.servers = servers
        super().__init__(tmp)
        # kombu's list transport never ran on a cluster: no earlier layout to drain
        del self.undecodable["earlier layout, not JSON"]

    @property
    def url(self) -> str:
        return str(self.servers.url)

    def make_client(self) -> Any:
        return self.servers.client()

    def close(self) -> None:
        self.servers.delete_matching(f"*contract-{self.token}*")
        self.client.close()


class Amqp(Subject):
    name = "amqp"
    cannot = {
        "undecodable": "AMQP carries bytes with their properties: every message is an "
                       "envelope kombu reads; a bad body is the worker's to dead-letter "
                       "(tests/reliability/test_bad_input.py)",
        "delivery count": "classic queues only mark a redelivery (quorum queues count: "
                          "x-delivery-count)",
        "fork": "a py-amqp connection is one socket: a child closing it closes the "
                "parent's (kombu's pools reset inherited connections instead)",
    }
    url = "amqp://guest:guest@127.0.0.1:5672//"  # type: ignore[assignment]

    def close(self) -> None:
        with Connection(self.url) as connection:
            for suffix in ("plain", "dead-letter", "dead-letter.dead", "priority", "lease",
                           "heartbeat", "requeue", "purge", "fanout-a", "fanout-b"):
                name = self.queue_name(suffix)
                for action in ("queue_delete", "exchange_delete"):
                    try:
                        getattr(connection.channel(), action)(name)
                    except Exception:  # noqa: BLE001 - never declared by this test
                        pass


#: Every transport the suite runs against, by name.
SUBJECTS: dict[str, type[Subject]] = {
    "memory": Memory, "sqlite": Sqlite, "redis": Redis, "redis-cluster": RedisCluster,
    "amqp": Amqp}


def hold_and_wait(url: str, options: dict[str, Any], queue: str, count: int,
                  report: Any) -> None:
    """Child: take ``count`` messages (no ack), report their bodies, wait to be killed."""
    with Connection(url, transport_options=options) as connection:
        bound = Queue(queue)(connection.channel())
        held = []
        deadline = time.monotonic() + 10
        while len(held) < count and time.monotonic() < deadline:
            message = bound.get(no_ack=False)
            if message is None:
                time.sleep(0.02)
            else:
                held.append(message.payload)
        report.put(held)
        time.sleep(60)  # the parent SIGKILLs this process long before
