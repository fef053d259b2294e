"""flowq's Redis transport for kombu: Redis Streams, consumer groups, leases with heartbeats.

Registered with kombu for ``redis://`` and ``rediss://`` (importing :mod:`flowq.runtime`
does it), so everything above kombu is unchanged. How queues live in Redis, and why a
message is never in two places nor in none, is in :mod:`.redis_streams`; this module is the
kombu side: channels, acks, the consumer's loop.

A channel is one consumer (``<host>:<pid>:<random>``) with its own lease: what it takes is
held under its name until it acknowledges it, gives it back (reject with requeue, close)
or stops renewing it for ``lease_seconds`` (``broker_lease_seconds``), after which any
other consumer takes it over, counting the delivery. A redelivered message carries
``delivery_info['redelivered']`` and ``delivery_info['delivery_count']``.

Reading: while idle, one ``XREADGROUP … BLOCK`` over every stream of the consumed queues is
in flight on a connection of its own, so a message is picked up the moment it is added;
while a read keeps returning full batches, the consumer takes batches with a script that
reads the streams highest priority first (and acknowledges what is due in the same call).
Acknowledgements are batched for ``ack_interval`` seconds. An entry that is not a valid
kombu message goes to ``<queue>.dead`` with the reason, in one log line, and the consumer
carries on. Fanout exchanges (remote control, events) are PUB/SUB channels: a broadcast
reaches the listeners subscribed at the time and is stored nowhere.

Transport options (``broker_transport_options``):

=========================  =======  =====================================================
``lease_seconds``             10.0  a consumer's hold on what it took, renewed every
                                    third of it (``broker_lease_seconds`` sets it)
``block_seconds``              1.0  longest wait of one blocking read
``sweep_interval``             1.0  seconds between looks for lapsed or released messages
``ack_interval``              0.05  seconds acknowledgements may wait to go in one batch
``key_prefix``             flowq:   prefix of every key and channel
``kombu_upgrade``             True  move messages kombu's list transport left into the
                                    streams (standalone Redis)
``socket_timeout``            30.0  seconds a command may take
``socket_connect_timeout``     5.0  seconds to connect
=========================  =======  =====================================================
"""

from __future__ import annotations

import functools
import logging
import os
import select
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from queue import Empty
from typing import Any, NamedTuple

import redis
from kombu.exceptions import BatchPublishError
from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.transport.virtual.exchange import ExchangeType
from redis.backoff import NoBackoff
from redis.retry import Retry

from flowq.runtime.broker import DEAD_LETTER_SUFFIX
from flowq.runtime.keys import DEFAULT_PREFIX, BrokerKeys
from flowq.runtime.transports import envelope
from flowq.runtime.transports.redis_legacy import KombuLeftovers
from flowq.runtime.transports.redis_streams import Entry, StreamQueues

__all__ = ["Channel", "QoS", "Transport"]

log = logging.getLogger("flowq.broker")

#: Separator of a binding's parts (kombu's, so its table format is kept).
SEP = "\x06\x16"
#: Messages taken per read when the prefetch is unlimited.
DEFAULT_BATCH = 100
#: How often a consumer looks for kombu's leftovers and forgets dead consumer names.
UPKEEP_INTERVAL = 30.0
#: Delivery tags of fanout messages (nothing to acknowledge) start with this.
FANOUT_TAG = "fanout:"


class Held(NamedTuple):
    """Where a message this channel took lives: what acknowledging it needs."""

    queue: str
    stream: int
    id: str


class QoS(virtual.QoS):
    """Prefetch accounting as kombu's, settling on the server through the channel."""

    channel: Channel

    def ack(self, delivery_tag: str) -> None:
        self.channel.settle([delivery_tag])
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        if requeue:
            self.channel.give_back([delivery_tag])
        else:
            self.channel.settle([delivery_tag])
        super().ack(delivery_tag)

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:
        """Give back every message this consumer holds (kombu's restore and recover)."""
        self._flush()
        self._delivered.clear()
        self.channel.give_back_all()
        return []

    def restore_visible(self, *args: Any, **kwargs: Any) -> int:
        return 0  # lapsed leases are taken over by the consumers' own sweeps


class Channel(virtual.Channel):
    """One consumer: its queues' blocking read, its acks, its lease."""

    QoS = QoS
    connection: Transport

    supports_fanout = True
    lease_seconds: float = 10.0
    block_seconds: float = 1.0
    sweep_interval: float = 1.0
    ack_interval: float = 0.05
    key_prefix: str = DEFAULT_PREFIX
    kombu_upgrade: bool = True
    socket_timeout: float = 30.0
    socket_connect_timeout: float = 5.0

    from_transport_options = virtual.Channel.from_transport_options + (  # type: ignore[assignment]
        "lease_seconds", "block_seconds", "sweep_interval", "ack_interval", "key_prefix",
        "kombu_upgrade", "socket_timeout", "socket_connect_timeout")

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.client = connection.make_client(self)
        self.client.ping()  # an unreachable server fails here, as kombu expects
        self.keys = BrokerKeys(self.key_prefix)
        self.streams = StreamQueues(self.client, self.keys)
        self.leftovers = KombuLeftovers(self.client, self.keys) if self.kombu_upgrade else None
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.db = connection.database()
        self._pid = os.getpid()
        self._held: dict[str, Held] = {}
        self._acks: list[Held] = []
        self._acks_since = 0.0
        self._options: dict[str, tuple[int | None, int | None] | None] = {}
        self._types: dict[str, str] = {}
        self._fanout: dict[str, str] = {}  # fanout-bound queue -> exchange
        self._no_ack: set[str] = set()  # queues consumed without acks: settled on delivery
        self._taken_from: set[str] = set()
        self._more: deque[str] = deque()  # queues whose last read was a full batch
        self._readers: dict[str, Reader] = {}  # read group -> its blocking read
        self._sweep_due: dict[str, float] = {}  # queue -> when to look for lapsed messages
        self._pubsub: Any = None
        self._subscribed: dict[bytes, str] = {}  # pub/sub channel -> queue
        now = time.monotonic()
        self._next_renew = now + self.renew_interval
        self._next_upkeep = now + UPKEEP_INTERVAL
        self._released_all = False

    @property
    def lease_ms(self) -> int:
        return int(float(self.lease_seconds) * 1000)

    @property
    def renew_interval(self) -> float:
        return float(self.lease_seconds) / 3

    def _mine(self) -> bool:
        """False in a forked child holding its parent's channel: it must not act for it."""
        return os.getpid() == self._pid and not self.closed

    # -- consuming ----------------------------------------------------------------------------

    @property
    def stream_queues(self) -> list[str]:
        """The consumed queues read from streams (fanout-bound ones come by PUB/SUB)."""
        return [queue for queue in dict.fromkeys(self._active_queues)
                if queue not in self._fanout]

    def capacity(self) -> int:
        """How many more messages the prefetch window takes now."""
        if not self.qos.can_consume():
            return 0
        estimate = self.qos.can_consume_max_estimate()
        return DEFAULT_BATCH if estimate is None else int(estimate)

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str,
                      **kwargs: Any) -> Any:
        """Consume ``queue``: by PUB/SUB if it is bound to a fanout exchange, else from
        its streams (its first messages come with the next read)."""
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        if no_ack:
            self._no_ack.add(queue)
        if queue in self._fanout:
            self._subscribe(queue)
        else:
            self._taken_from.add(queue)
            self._more.append(queue)  # messages may be waiting: take them now
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._no_ack.discard(queue)
            if queue in self._fanout:
                self._unsubscribe(queue)
        return result

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        """One message of ``queue`` or None; with ``no_ack`` it is acknowledged at once."""
        try:
            message = self.Message(self._get(queue), channel=self)
        except Empty:
            return None
        if no_ack:
            self.settle([message.delivery_tag])
        else:
            self.qos.append(message, message.delivery_tag)
        return message

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """Take the next message of ``queue`` (lapsed ones first); Empty when none."""
        self._taken_from.add(queue)
        while True:
            entries = self.streams.take(queue, self.consumer, 1, self.lease_ms,
                                        self._acks_for(queue))
            if not entries:
                raise Empty()
            payloads = list(self._payloads(entries))
            if payloads:
                return payloads[0][1]

    def read_groups(self) -> dict[str, list[str]]:
        """The queues each blocking read covers, by a name for the read: here one read
        over every queue (a Redis Cluster reads each queue apart: one slot per command)."""
        queues = self.stream_queues
        return {"*": queues} if queues else {}

    def _idle_queues(self) -> list[str]:
        """The consumed queues no blocking read is in flight for."""
        groups = self.read_groups()
        return [queue for name, queues in groups.items()
                if not (name in self._readers and self._readers[name].busy)
                for queue in queues]

    def take_ready(self) -> bool:
        """Take what is waiting without blocking (after a full batch, or lapsed messages
        when a sweep is due) from queues no read is in flight for, and deliver it; True
        if anything was delivered."""
        if not self._mine():
            return False
        room = self.capacity()
        queues = self._idle_queues()
        if not room or not queues:
            return False
        now = time.monotonic()
        due = [queue for queue in queues if now >= self._sweep_due.get(queue, 0.0)]
        sweeping = bool(due)
        if sweeping:
            for queue in due:
                self._sweep_due[queue] = now + float(self.sweep_interval)
            todo = due
        else:
            while self._more and self._more[0] not in queues:
                self._more.popleft()
            if not self._more:
                return False
            todo = [self._more[0]]
        delivered = False
        for queue in todo:
            room = self.capacity()
            if not room:
                break
            entries = self.streams.take(queue, self.consumer, room,
                                        self.lease_ms if sweeping else 0, self._acks_for(queue))
            if queue in self._more:
                self._more.remove(queue)
            if len(entries) >= room:
                self._more.append(queue)  # there may be more: take again next time
            delivered = self._deliver(entries) or delivered
        return delivered

    def readers(self) -> list[Reader]:
        """The blocking reads to wait on: each started now if there is room and it has
        none in flight (the room shared between them); empty when this channel reads no
        streams."""
        groups = self.read_groups()
        if not groups or not self._mine():
            return []
        for name in [name for name in self._readers if name not in groups]:
            if not self._readers[name].busy:  # a busy one delivers first: gives back
                self._readers.pop(name).drop()
        for name, queues in groups.items():
            if name not in self._readers:
                self._readers[name] = Reader(self.connection.open_reader(self, queues))
            reader = self._readers[name]
            if not reader.busy and not set(queues) & set(self._more):
                room = self.capacity()
                if room:
                    count = max(1, room // len(groups))
                    self.flush_acks()  # not left waiting while the read blocks
                    reader.start(*self.streams.read_command(
                        queues, self.consumer, count, int(float(self.block_seconds) * 1000)),
                        count)
        return [reader for reader in self._readers.values() if reader.busy]

    def on_readable(self, reader: Reader) -> bool:
        """The blocking read answered: deliver; True if anything was delivered."""
        try:
            entries = reader.finish()
        except redis.ResponseError as exc:
            self._read_failed(reader, exc)
            return False
        counts: dict[str, int] = {}
        for entry in entries:
            counts[entry.queue] = counts.get(entry.queue, 0) + 1
        for queue, count in counts.items():
            if count >= reader.count and queue not in self._more:
                self._more.append(queue)  # a full batch: more may be waiting
        return self._deliver(entries)

    def _read_failed(self, reader: Reader, error: redis.ResponseError) -> None:
        """A queue was deleted (or its group destroyed) under the read: declare the
        queues again and read on."""
        log.warning("Read on %s failed (%s); declaring them again", self.stream_queues, error)
        for queue in self.stream_queues:
            self._declare(queue)

    def _deliver(self, entries: Sequence[Entry]) -> bool:
        """Hand decoded entries to kombu; give back those of queues no longer consumed."""
        delivered = False
        stale: list[str] = []
        for tag, payload, queue in self._payloads(entries):
            if queue not in self._active_queues:
                stale.append(tag)
                continue
            self.connection._deliver(payload, queue)
            if queue in self._no_ack:
                self.settle([tag])
            delivered = True
        if stale:
            self.give_back(stale)
        return delivered

    def _payloads(self, entries: Iterable[Entry]) -> Iterable[tuple[str, dict[str, Any], str]]:
        """(tag, kombu message, queue) per valid entry, now held under its tag; invalid
        entries are dead-lettered (and acknowledged with the next batch)."""
        for entry in entries:
            fields = dict(zip(entry.fields[::2], entry.fields[1::2]))
            if b"w" in fields:  # messages were given back: look for them now
                self._queue_ack(Held(entry.queue, entry.stream, entry.id))
                self._sweep_due[entry.queue] = 0.0
                continue
            raw = fields.get(b"m")
            try:
                if raw is None or set(fields) - {b"m", b"d"}:
                    raise envelope.UndecodableEntry(
                        f"not a flowq stream entry (fields {sorted(fields)!r}; expected 'm')")
                payload = envelope.decode(raw)
                deliveries = entry.deliveries + int(fields.get(b"d") or 0)
            except (envelope.UndecodableEntry, ValueError) as exc:
                self._dead_letter(entry, raw if raw is not None else repr(fields).encode(),
                                  str(exc))
                continue
            tag = f"{entry.queue}{SEP}{entry.stream}{SEP}{entry.id}{SEP}{deliveries}"
            properties = payload["properties"]
            properties["delivery_tag"] = tag
            info = properties["delivery_info"]
            info["redelivered"] = deliveries > 1
            info["delivery_count"] = deliveries
            self._held[tag] = Held(entry.queue, entry.stream, entry.id)
            yield tag, payload, entry.queue

    def _dead_letter(self, entry: Entry, raw: bytes, reason: str) -> None:
        """Keep an undecodable entry in ``<queue>.dead`` with the reason; then it is
        acknowledged (before that, a crash only means it is dead-lettered again)."""
        dead = entry.queue + DEAD_LETTER_SUFFIX
        payload = envelope.dead_letter(raw, entry.queue, reason, **{"x-flowq-entry": entry.id})
        if self._options_of(dead) is None:
            self._declare(dead)
        if self.streams.publish(self.client, dead, 0, envelope.encode(payload), None) is None:
            self._declare(dead)  # deleted meanwhile
            self.streams.publish(self.client, dead, 0, envelope.encode(payload), None)
        log.error("Undecodable message %s in queue %s dead-lettered to %s: %s",
                  entry.id, entry.queue, dead, reason)
        self._queue_ack(Held(entry.queue, entry.stream, entry.id))

    # -- settling -----------------------------------------------------------------------------

    def settle(self, tags: Sequence[str]) -> None:
        """Acknowledge: the messages are done and deleted (in the next batch while
        consuming; at once for a channel that only gets)."""
        for tag in tags:
            held = self._held.pop(tag, None)
            if held is not None:
                self._queue_ack(held)
        if not self._consumers or float(self.ack_interval) <= 0:
            self.flush_acks()

    def _queue_ack(self, held: Held) -> None:
        if not self._acks:
            self._acks_since = time.monotonic()
        self._acks.append(held)

    def _acks_for(self, queue: str) -> list[tuple[int, str]]:
        """Take the pending acknowledgements of ``queue`` (to send with a take)."""
        mine = [(held.stream, held.id) for held in self._acks if held.queue == queue]
        if mine:
            self._acks = [held for held in self._acks if held.queue != queue]
        return mine

    def flush_acks(self) -> None:
        """Send every pending acknowledgement now (one script call per queue)."""
        if not self._mine():
            return
        for queue in {held.queue for held in self._acks}:
            self.streams.take(queue, self.consumer, 0, 0, self._acks_for(queue))

    def give_back(self, tags: Sequence[str]) -> None:
        """Make messages ready again at once, in their place (reject with requeue)."""
        by_queue: dict[str, list[tuple[int, str]]] = {}
        for tag in tags:
            held = self._held.pop(tag, None)
            if held is not None:
                by_queue.setdefault(held.queue, []).append((held.stream, held.id))
        for queue, entries in by_queue.items():
            self.streams.release(queue, self.consumer, entries)

    def give_back_all(self, leave: bool = False) -> None:
        """Give back everything this consumer holds, on every queue it took from (what
        the server's pending lists say, so also messages of a read never looked at)."""
        if not self._mine() or self._released_all:
            return
        self.flush_acks()
        for queue in self._taken_from:
            self.streams.release(queue, self.consumer, None, leave=leave)
        self._held.clear()
        self._released_all = leave

    # -- upkeep -------------------------------------------------------------------------------

    def maintain(self) -> None:
        """Heartbeat and batched acks, when due: the lease of everything held is renewed
        every third of it, and queues declared with x-expires are kept alive."""
        if not self._mine():
            return
        now = time.monotonic()
        if self._acks and now - self._acks_since >= float(self.ack_interval):
            self.flush_acks()
        if now >= self._next_renew:
            self._next_renew = now + self.renew_interval
            for queue in {held.queue for held in self._held.values()}:
                self.streams.renew(queue, self.consumer)
            for queue in self._active_queues:
                expires = (self._options_of(queue) or (None, None))[1]
                if expires:
                    self.streams.touch(queue, expires)
        if now >= self._next_upkeep:
            self._next_upkeep = now + UPKEEP_INTERVAL
            for queue in self.stream_queues:
                if self.leftovers is not None:
                    self.leftovers.drain(queue, float(self.lease_seconds))
                self.streams.prune(queue, max(60_000, 10 * self.lease_ms))

    def next_due(self) -> float:
        """The monotonic time :meth:`maintain` or :meth:`take_ready` next has work."""
        due = min(self._next_renew, self._next_upkeep)
        if self._acks:
            due = min(due, self._acks_since + float(self.ack_interval))
        idle = self._idle_queues()
        if idle and self.capacity():
            due = min(due, time.monotonic() if self._more else min(
                self._sweep_due.get(queue, 0.0) for queue in idle))
        return due

    # -- publishing ---------------------------------------------------------------------------

    def create_publish_batch(self, max_size: int) -> PublishBatch:
        """kombu's ``Producer.batch``: many publishes in one pipelined round trip."""
        return PublishBatch(self, max_size)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Add ``message`` to ``queue``'s stream of its priority."""
        batch: PublishBatch | None = kwargs.pop("_publish_batch", None)
        item = (queue, self._get_message_priority(message), envelope.encode(message),
                bool(kwargs.get("mandatory")))
        if batch is not None:
            batch.add(item)
        elif self._publish(self.client, item) is None:
            self.unroutable(item)

    def _publish(self, target: Any, item: tuple[str, int, str, bool]) -> Any:
        queue, priority, payload, _ = item
        options = self._options_of(queue)
        return self.streams.publish(target, queue, priority, payload,
                                    options[0] if options else None)

    def unroutable(self, item: tuple[str, int, str, bool]) -> None:
        """A publish found its queue missing: for a mandatory message, declare the queue
        and publish again; any other is dropped, as RabbitMQ drops a message no queue
        takes (a reply whose asker left, for one)."""
        queue, _, _, mandatory = item
        self._options.pop(queue, None)
        if not mandatory:
            log.debug("Dropped a message for queue %s, which does not exist", queue)
            return
        self._declare(queue)
        if self._publish(self.client, item) is None:
            raise redis.ResponseError(f"queue {queue!r} vanished while publishing to it")

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str,
                    **kwargs: Any) -> None:
        """Broadcast ``message`` to the listeners subscribed to ``exchange`` now."""
        batch: PublishBatch | None = kwargs.pop("_publish_batch", None)
        target = batch.pipeline if batch is not None else self.client
        # (a command, not .publish(): a Redis Cluster's pipelines refuse that method)
        target.execute_command("PUBLISH", self.keys.fanout(self.db, exchange),
                               envelope.encode(message))
        if batch is not None:
            batch.added(None)

    # -- queues -------------------------------------------------------------------------------

    def prepare_queue_arguments(self, arguments: Any, **kwargs: Any) -> Any:
        """Queue options (``max_length``, ``expires``) as RabbitMQ's ``x-`` arguments."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        arguments = kwargs.get("arguments") or {}
        self._declare(queue, arguments.get("x-max-length"), arguments.get("x-expires"))

    def _declare(self, queue: str, max_length: Any = None, expires: Any = None) -> None:
        options = (None if max_length is None else int(max_length),
                   None if expires is None else int(expires))
        self.streams.declare(queue, *options)
        self._options[queue] = options
        if self.leftovers is not None:
            self.leftovers.drain(queue, float(self.lease_seconds))

    def _options_of(self, queue: str) -> tuple[int | None, int | None] | None:
        """The queue's (max_length, expires_ms), or None if it does not exist; cached."""
        if queue not in self._options or self._options[queue] is None:
            self._options[queue] = self.streams.options(queue)
        return self._options[queue]

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.streams.exists(queue)

    def _size(self, queue: str) -> int:
        return self.streams.size(queue, self.lease_ms)

    def _purge(self, queue: str) -> int:
        return self.streams.purge(queue, self.lease_ms)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self.streams.delete(queue)
        self._options.pop(queue, None)

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False,
                     **kwargs: Any) -> None:
        """Delete ``queue`` with its messages and bindings, whoever declared them."""
        if if_empty and self._size(queue):
            return
        self._delete(queue)
        self.state.queue_bindings_delete(queue)

    # -- exchanges and bindings ---------------------------------------------------------------

    def exchange_declare(self, exchange: str | None = None, type: str = "direct",
                         durable: bool = False, auto_delete: bool = False,
                         arguments: dict[str, Any] | None = None, nowait: bool = False,
                         passive: bool = False) -> None:
        """Declare ``exchange`` here and record its type for producers elsewhere."""
        super().exchange_declare(exchange, type, durable, auto_delete, arguments, nowait,
                                 passive)
        if not passive:
            name = exchange or f"amq.{type or 'direct'}"
            if self._types.get(name) != (type or "direct"):
                self.client.hsetnx(self.keys.exchanges, name, type or "direct")
                self._types[name] = type or "direct"

    def exchange_delete(self, exchange: str, if_unused: bool = False,
                        nowait: bool = False) -> None:
        super().exchange_delete(exchange, if_unused=if_unused, nowait=nowait)
        self.client.delete(self.keys.bindings(exchange))
        self.client.hdel(self.keys.exchanges, exchange)
        self._types.pop(exchange, None)

    def typeof(self, exchange: str, default: str = "direct") -> ExchangeType:
        """The exchange's type as declared here, else as declared by any process."""
        try:
            type_ = self.state.exchanges[exchange]["type"]
        except KeyError:
            if exchange not in self._types:
                stored = self.client.hget(self.keys.exchanges, exchange)
                self._types[exchange] = stored.decode() if stored else default
            type_ = self._types[exchange]
        return self.exchange_types[type_]  # type: ignore[no-any-return]

    def get_table(self, exchange: str) -> list[tuple[str, str | None, str]]:
        """The exchange's bindings from every process, as ``(routing_key, pattern, queue)``."""
        table = []
        for member in self.client.smembers(self.keys.bindings(exchange)):
            routing_key, pattern, queue = member.decode().split(SEP)
            table.append((routing_key, pattern or None, queue))
        return table

    def queue_bind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                   arguments: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Bind for every process; a fanout binding is a PUB/SUB subscription instead."""
        exchange = exchange or "amq.direct"
        kind = self.typeof(exchange)
        if kind.type == "fanout":
            self._fanout[queue] = exchange
            return
        routing_key, pattern, queue = kind.prepare_bind(queue, exchange, routing_key, arguments)
        member = SEP.join([routing_key or "", pattern or "", queue])
        pipe = self.client.pipeline(transaction=False)
        pipe.sadd(self.keys.bindings(exchange), member)
        pipe.sadd(self.keys.queue_bindings(queue), f"{exchange}{SEP}{member}")
        pipe.execute()

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str = "",
                     arguments: dict[str, Any] | None = None, **kwargs: Any) -> None:
        exchange = exchange or "amq.direct"
        if self._fanout.get(queue) == exchange:
            self._fanout.pop(queue)
            return
        routing_key, pattern, queue = self.typeof(exchange).prepare_bind(
            queue, exchange, routing_key, arguments)
        member = SEP.join([routing_key or "", pattern or "", queue])
        self.client.srem(self.keys.bindings(exchange), member)
        self.client.srem(self.keys.queue_bindings(queue), f"{exchange}{SEP}{member}")

    # -- fanout -------------------------------------------------------------------------------

    def _subscribe(self, queue: str) -> None:
        if self._pubsub is None:
            self._pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        name = self.keys.fanout(self.db, self._fanout[queue])
        self._subscribed[name.encode()] = queue
        self._pubsub.subscribe(name)

    def _unsubscribe(self, queue: str) -> None:
        name = self.keys.fanout(self.db, self._fanout[queue]).encode()
        if self._subscribed.pop(name, None) is not None and self._pubsub is not None:
            self._pubsub.unsubscribe(name)

    def listener(self) -> Any:
        """The PUB/SUB connection to wait on, or None when nothing is subscribed."""
        if self._pubsub is None or not self._subscribed or not self._mine():
            return None
        return self._pubsub.connection

    def on_broadcast(self) -> bool:
        """Deliver the broadcasts that arrived; True if any was."""
        delivered = False
        while self._pubsub is not None:
            message = self._pubsub.get_message(timeout=0.0)
            if message is None:
                return delivered
            queue = self._subscribed.get(message["channel"])
            if queue is None or queue not in self._active_queues:
                continue
            try:
                payload = envelope.decode(message["data"])
            except envelope.UndecodableEntry as exc:
                log.error("Undecodable broadcast on %s dropped: %s", message["channel"], exc)
                continue
            payload["properties"]["delivery_tag"] = f"{FANOUT_TAG}{uuid.uuid4().hex}"
            self.connection._deliver(payload, queue)
            delivered = True
        return delivered

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop reading, send pending acks, give back what this consumer holds, close.

        In a forked child that inherited the channel nothing is sent: the parent still
        holds those messages, under the same consumer name.
        """
        if self.closed:
            return
        for reader in self._readers.values():
            reader.drop()  # first: no read delivers to this consumer any more
        if os.getpid() == self._pid:
            try:
                self.give_back_all(leave=True)
            except self.connection.connection_errors as exc:
                log.warning("Could not give back held messages (they come back when the "
                            "lease of %ss lapses): %s", self.lease_seconds, exc)
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:  # noqa: BLE001 - a dead socket
                pass
        super().close()


class Reader:
    """One blocking ``XREADGROUP`` at a time, on a connection of its own."""

    def __init__(self, conn: Any):
        self.conn = conn
        self.busy = False
        self.count = 0
        self._streams: dict[bytes, tuple[str, int]] = {}

    def start(self, command: list[Any], streams: dict[bytes, tuple[str, int]],
              count: int) -> None:
        self.conn.send_command(*command)
        self._streams = streams
        self.count = count
        self.busy = True

    def fileno(self) -> int:
        return int(self.conn._sock.fileno())

    def has_data(self) -> bool:
        return bool(self.busy and self.conn.can_read(timeout=0))

    def finish(self) -> list[Entry]:
        self.busy = False
        try:
            reply = self.conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            self.conn.disconnect()
            raise
        return StreamQueues.parse_read(reply, self._streams)

    def drop(self) -> None:
        self.busy = False
        try:
            self.conn.disconnect()
        except Exception:  # noqa: BLE001 - closing a dead socket
            pass


class PublishBatch:
    """Publishes buffered in one pipeline, flushed by kombu's ``Producer.batch``."""

    def __init__(self, channel: Channel, max_size: int):
        self.channel = channel
        self.max_size = max_size
        self.pipeline = channel.client.pipeline(transaction=False)
        self._items: list[tuple[str, int, str, bool] | None] = []
        self._failed: BaseException | None = None

    def publish(self, message: dict[str, Any], **kwargs: Any) -> Any:
        if self._failed is not None:
            raise BatchPublishError("Redis publish batch cannot be reused after a "
                                    "failure") from self._failed
        return self.channel.basic_publish(message, _publish_batch=self, **kwargs)

    def add(self, item: tuple[str, int, str, bool]) -> None:
        self.channel._publish(self.pipeline, item)
        self.added(item)

    def added(self, item: tuple[str, int, str, bool] | None) -> None:
        self._items.append(item)
        if len(self._items) >= self.max_size:
            self.flush()

    def flush(self) -> None:
        if not self._items:
            return
        items, self._items = self._items, []
        try:
            replies = self.pipeline.execute()
        except Exception as exc:
            self._failed = exc
            self.pipeline.reset()
            raise BatchPublishError("Redis publish batch failed; delivery is uncertain") from exc
        for item, reply in zip(items, replies):
            if item is not None and reply is None:
                self.channel.unroutable(item)

    def discard(self) -> None:
        self._items.clear()
        self.pipeline.reset()

    def close(self) -> None:
        self.pipeline.reset()


class Transport(virtual.Transport):
    """kombu transport for flowq's Redis layout (``redis://`` and ``rediss://``)."""

    Channel = Channel

    polling_interval = None
    default_port = 6379
    driver_type = "redis"
    driver_name = "redis"

    connection_errors = virtual.Transport.connection_errors + (  # type: ignore[assignment]
        redis.ConnectionError, redis.TimeoutError, OSError)
    channel_errors = virtual.Transport.channel_errors + (  # type: ignore[assignment]
        redis.ResponseError, redis.DataError)

    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False, batch_publish=True)

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._redis: redis.Redis | None = None

    # The one place a Redis client is made (the Redis Cluster variant swaps these).

    def make_client(self, channel: Channel) -> redis.Redis:
        """The client every channel of this connection shares (connections are pooled)."""
        if self._redis is None:
            self._redis = redis.Redis(**self.client_options(channel))
        return self._redis

    def open_reader(self, channel: Channel, queues: Sequence[str]) -> Any:
        """A connection of the channel's own for its blocking reads of ``queues``."""
        return channel.client.connection_pool.make_connection()

    def database(self) -> int:
        """The database number: fanout channels name it (PUB/SUB spans databases)."""
        return _database(self.client.virtual_host)

    def client_options(self, channel: Channel) -> dict[str, Any]:
        """redis-py's options from kombu's connection: host, port, database, credentials,
        TLS; redis-py's own retries are off (kombu and flowq retry whole operations)."""
        conninfo = self.client
        options: dict[str, Any] = {
            "host": conninfo.hostname or "127.0.0.1", "port": conninfo.port or self.default_port,
            "db": _database(conninfo.virtual_host), "username": conninfo.userid or None,
            "password": conninfo.password or None, "protocol": 2,
            "socket_timeout": float(channel.socket_timeout),
            "socket_connect_timeout": float(channel.socket_connect_timeout),
            "retry": Retry(NoBackoff(), 0), "health_check_interval": 0}
        if conninfo.ssl or conninfo.transport_cls == "rediss":
            options["ssl"] = True
            if isinstance(conninfo.ssl, dict):
                options.update(conninfo.ssl)
        return options

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        if self._redis is not None:
            self._redis.connection_pool.disconnect()
            self._redis = None

    # -- the consumer's loop ------------------------------------------------------------------

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """Deliver what arrives on any channel within ``timeout`` (None: wait), doing
        each channel's upkeep on the way; socket.timeout when nothing came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            waits: dict[Any, tuple[Channel, Callable[[], bool]]] = {}
            for channel in list(self.channels):
                channel.maintain()
                if channel.take_ready():
                    return
                for reader in channel.readers():
                    if reader.has_data() and channel.on_readable(reader):
                        return
                    if reader.busy:
                        waits[reader] = (channel, functools.partial(channel.on_readable, reader))
                listener = channel.listener()
                if listener is not None:
                    if listener.can_read(timeout=0) and channel.on_broadcast():
                        return
                    waits[listener._sock] = (channel, channel.on_broadcast)
            now = time.monotonic()
            due = min((channel.next_due() for channel in self.channels), default=now + 1.0)
            left = None if deadline is None else deadline - now
            if left is not None and left <= 0:
                raise TimeoutError()
            wait = max(0.0, due - now) if left is None else max(0.0, min(left, due - now))
            ready = _wait(list(waits), wait)
            if any(waits[source][1]() for source in ready):
                return

    def heartbeat_check(self, connection: Any, rate: int = 2) -> None:
        """Renew leases and send due acks without reading (kombu's heartbeat hook)."""
        for channel in list(self.channels):
            channel.maintain()


def _wait(sources: list[Any], seconds: float) -> list[Any]:
    """The sources (objects with ``fileno``) readable within ``seconds``."""
    if not sources:
        time.sleep(seconds)
        return []
    readable, _, _ = select.select(sources, [], [], seconds)
    return readable


def _database(virtual_host: str | None) -> int:
    """The database number kombu's URL names (``redis://host/7``: 7; none: 0)."""
    name = (virtual_host or "").strip("/")
    if not name:
        return 0
    try:
        return int(name)
    except ValueError:
        raise ValueError(f"a Redis URL's path is a database number, not {name!r}") from None
