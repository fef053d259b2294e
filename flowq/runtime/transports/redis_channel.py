"""A consumer of flowq's Redis transport: its reads, acknowledgements, lease and upkeep.

A channel is one consumer (``<host>:<pid>:<random>``) with its own lease: what it takes is
held under its name until it acknowledges it, gives it back (reject with requeue, close)
or stops renewing it for ``lease_seconds``, after which any other consumer takes it over,
counting the delivery. Reading: while idle, one ``XREADGROUP … BLOCK`` over every stream of
the consumed queues is in flight on a connection of its own, so a message is picked up
the moment it is added; while reads keep returning full batches, the channel takes
batches with a script that reads the streams highest priority first and sends the due
acknowledgements in the same call. An entry that is not a valid kombu message goes to
``<queue>.dead`` with the reason, in one log line, and the channel carries on.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Iterable, Sequence
from queue import Empty
from typing import TYPE_CHECKING, Any, NamedTuple

import redis
from kombu.transport import virtual

from flowq.runtime.broker import DEAD_LETTER_SUFFIX
from flowq.runtime.transports import envelope
from flowq.runtime.transports.redis_routing import SEP, Routing
from flowq.runtime.transports.redis_streams import Entry, Reader

if TYPE_CHECKING:
    from flowq.runtime.transports.redis import Transport

__all__ = ["Channel", "QoS"]

log = logging.getLogger("flowq.broker")

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


class Channel(Routing):
    """One consumer: its queues' blocking read, its acks, its lease."""

    QoS = QoS

    block_seconds: float = 1.0
    sweep_interval: float = 1.0
    ack_interval: float = 0.05

    from_transport_options = virtual.Channel.from_transport_options + (  # type: ignore[assignment]
        "lease_seconds", "block_seconds", "sweep_interval", "ack_interval", "key_prefix",
        "kombu_upgrade", "socket_timeout", "socket_connect_timeout")

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.consumer = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pid = os.getpid()
        self._held: dict[str, Held] = {}
        self._acks: list[Held] = []
        self._acks_since = 0.0
        self._no_ack: set[str] = set()  # queues consumed without acks: settled on delivery
        self._taken_from: set[str] = set()
        self._more: deque[str] = deque()  # queues whose last read was a full batch
        self._readers: dict[tuple[str, ...], Reader] = {}  # queues read together -> read
        self._sweep_due: dict[str, float] = {}  # queue -> when to look for lapsed messages
        self._pubsub: Any = None
        self._subscribed: dict[bytes, str] = {}  # pub/sub channel -> queue
        now = time.monotonic()
        self._next_renew = now + self.renew_interval
        self._next_upkeep = now + UPKEEP_INTERVAL
        self._released_all = False

    @property
    def renew_interval(self) -> float:
        return float(self.lease_seconds) / 3

    def _mine(self) -> bool:
        """False in a forked child holding its parent's channel: it must not act for it."""
        return os.getpid() == self._pid and not self.closed

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

    def _groups(self) -> list[tuple[str, ...]]:
        """The groups of consumed queues the transport reads in one command each."""
        queues = self.stream_queues
        return [tuple(group) for group in self.connection.read_groups(self, queues)
                if group] if queues else []

    def _idle_queues(self) -> list[str]:
        """The consumed queues no blocking read is in flight for."""
        return [queue for group in self._groups()
                if not (group in self._readers and self._readers[group].busy)
                for queue in group]

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
        none in flight (the room shared between them), one per group of queues the
        transport reads in one command (all of them on one server)."""
        if not self._mine():
            return []
        groups = self._groups()
        for stale in set(self._readers) - set(groups):  # queues no longer consumed
            self._readers.pop(stale).drop()  # (what it took meanwhile goes back at close)
        for group in groups:
            reader = self._readers.get(group)
            if reader is None:
                reader = self._readers[group] = Reader(self.connection.open_reader(self, group))
            if not reader.busy and not set(group) & set(self._more):
                room = self.capacity()
                if room:
                    count = max(1, room // len(groups))
                    reader.start(*self.streams.read_command(
                        group, self.consumer, count, int(float(self.block_seconds) * 1000)),
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
