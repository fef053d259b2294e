"""A kombu transport on a local SQLite file: the embedded default broker, no server needed.

A worker and its producers, in any number of processes on one machine, share one file::

    import flowq.runtime  # registers the transport with kombu under the ``sqlite`` scheme
    from kombu import Connection

    with Connection("sqlite:///.flowq/broker.db") as conn:
        conn.SimpleQueue("tasks").put({"hello": "world"})

The path follows SQLAlchemy's convention: ``sqlite:///relative.db`` and
``sqlite:////absolute.db``; with no path the file is ``.flowq/broker.db``.

Delivery is at least once and survives the death of any process:

* a consumer *claims* a message: its row gets a fresh delivery tag, the consumer's name and
  a deadline (``lease_seconds`` from now, ``broker_lease_seconds``) instead of being
  deleted; while the consumer lives it pushes the deadline of everything it holds forward
  every third of the lease (a heartbeat, one statement), so a long task keeps its message;
* ``ack`` and ``reject(requeue=False)`` delete the row; ``reject(requeue=True)``, closing
  the channel or connection, and kombu's restore at shutdown make it ready again at once,
  in its original place;
* a claim whose holder died (SIGKILL, OOM kill, ``os._exit``) lapses at its deadline and is
  made ready again by the next sweep of any consumer (every ``sweep_interval`` s);
* a message claimed again after any of these carries ``delivery_info['redelivered']``
  True, and ``delivery_info['delivery_count']`` counts its claims (1 on first delivery);
* a row that is not a valid kombu message is moved to ``<queue>.dead`` with the reason
  (one transaction, one log line) and the consumer carries on.

Exchanges and bindings are stored in the file, so a producer that never declared a queue
routes to it; direct, topic and fanout exchanges work across processes (fanout copies the
message into every bound queue in one transaction). Priorities follow kombu's Redis and
AMQP meaning: 0-9, larger first, FIFO within a priority.

A consumer records the queues it consumes in the file, so a producer can tell (with
:func:`warn_if_never_consumed`) that no worker has ever taken messages from a queue.

Transport options (``Connection(..., transport_options={...})``):

=====================  =========  ================================================
``lease_seconds``          10.0   seconds a claim outlives its holder's last heartbeat
``sweep_interval``          1.0   seconds between looks for lapsed claims
``busy_timeout``            5.0   seconds a statement waits for the write lock
``synchronous``         NORMAL    SQLite ``synchronous``; NORMAL survives process
                                  crashes, FULL also power loss (slower)
``polling_interval``       0.01   seconds an idle consumer sleeps between polls
=====================  =========  ================================================
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path
from queue import Empty
from typing import Any, cast

from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.transport.virtual.exchange import ExchangeType
from kombu.utils.json import dumps
from kombu.utils.uuid import uuid

from flowq.runtime.broker import DEAD_LETTER_SUFFIX
from flowq.runtime.transports import envelope
from flowq.runtime.transports.sqlite_store import Claimed, Store

__all__ = ["Channel", "QoS", "Transport", "database_path", "warn_if_never_consumed"]

log = logging.getLogger("flowq.broker")

#: Where the broker lives when the URL names no file (``sqlite://``).
DEFAULT_PATH = ".flowq/broker.db"

#: (broker file, queue) pairs this process has checked for a consumer: a producer looks
#: once per queue, and says so at most once.
_checked_queues: set[tuple[Path, str]] = set()


def database_path(virtual_host: str | None) -> Path:
    """The absolute path of the broker file named by kombu's ``virtual_host``.

    kombu's URL parser leaves ``.flowq/b.db`` for ``sqlite:///.flowq/b.db`` and
    ``/tmp/b.db`` for ``sqlite:////tmp/b.db``; an empty path or ``/`` means the default.
    Resolving once, when the connection is made, keeps a later ``chdir`` from splitting
    one connection's channels over two files.
    """
    name = virtual_host if virtual_host and virtual_host != "/" else DEFAULT_PATH
    return Path(os.path.abspath(name))


class QoS(virtual.QoS):
    """Acks, rejects and restores applied to the message rows, so they outlive this process.

    kombu's virtual QoS keeps unacked messages only in memory and re-publishes them on
    restore; here an unacked message stays in the file, reserved under its delivery tag,
    and every operation is a statement on that tag.
    """

    channel: Channel

    def __init__(self, channel: Channel, prefetch_count: int = 0) -> None:
        super().__init__(channel, prefetch_count)
        self._owner_pid = os.getpid()

    def ack(self, delivery_tag: str) -> None:
        """Delete the acknowledged message."""
        self.channel.store.delete([delivery_tag])
        super().ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        """Make the message ready again now (``requeue``) or delete it."""
        if requeue:
            self.channel.store.release([delivery_tag])
        else:
            self.channel.store.delete([delivery_tag])
        super().ack(delivery_tag)

    def restore_unacked(self) -> list[tuple[BaseException, virtual.Message]]:
        """Make every message this channel holds unacked ready again, in one transaction.

        Returns kombu's ``(error, message)`` pairs for messages that could not be released;
        those are not lost, their claims lapse with the lease. A forked child
        that closes an inherited connection (kombu's pools do, after fork) releases
        nothing: the parent still holds those messages and will ack them.
        """
        self._flush()
        held = dict(self._delivered)
        self._delivered.clear()
        if os.getpid() != self._owner_pid:
            return []
        try:
            self.channel.store.release(list(held))
        except sqlite3.Error as exc:
            return [(exc, message) for message in held.values()]
        return []

    def restore_visible(self, *args: Any, **kwargs: Any) -> int:
        """Make ready again every claim, from any process, whose deadline has passed."""
        return self.channel.store.release_lapsed(time.time())


class Channel(virtual.Channel):
    """A virtual channel whose queues, exchanges and bindings live in the SQLite file."""

    QoS = QoS
    connection: Transport

    supports_fanout = True
    lease_seconds: float = 10.0
    sweep_interval: float = 1.0
    busy_timeout: float = 5.0
    synchronous: str = "NORMAL"

    # kombu's class attribute is inferred as a 2-tuple; ours is longer, not a different kind.
    from_transport_options = virtual.Channel.from_transport_options + (  # type: ignore[assignment]
        "lease_seconds",
        "sweep_interval",
        "busy_timeout",
        "synchronous",
    )

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.store = Store(
            connection.path, busy_timeout=float(self.busy_timeout), synchronous=self.synchronous
        )
        self._no_ack_queues: set[str] = set()
        self._idle_version: tuple[int, int] | None = None
        self._next_sweep = 0.0
        #: This channel's name on the rows it claims, for its heartbeat.
        self.holder = uuid()
        self._next_heartbeat = 0.0

    # -- consuming --------------------------------------------------------------------------

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        """Claim the next message of ``queue``; queues consumed with no_ack lose it at once."""
        return self._fetch(queue, no_ack=queue in self._no_ack_queues)

    def _fetch(self, queue: str, no_ack: bool) -> dict[str, Any]:
        """Claim (or, for ``no_ack``, remove) the next ready message; Empty when none is
        ready. A row that is not a kombu message is dead-lettered and the next one taken."""
        self._sweep_if_due()
        while True:
            if no_ack:
                tag = None
                claimed = self.store.take(queue)
            else:
                tag = uuid()
                claimed = self.store.claim(queue, tag, time.time() + float(self.lease_seconds),
                                           self.holder)
            if claimed is None:
                raise Empty()
            try:
                return _delivered_message(claimed, tag)
            except envelope.UndecodableEntry as exc:
                self._dead_letter(queue, claimed, tag, str(exc))

    def _dead_letter(self, queue: str, claimed: Claimed, tag: str | None, reason: str) -> None:
        """Move an undecodable row to ``<queue>.dead`` (a valid message carrying it)."""
        dead = queue + DEAD_LETTER_SUFFIX
        raw = claimed.payload
        payload = envelope.dead_letter(
            raw if isinstance(raw, bytes) else raw.encode("utf-8", "surrogateescape"),
            queue, reason)
        self.store.dead_letter(tag, dead, dumps(payload))
        log.error("Undecodable message in queue %s dead-lettered to %s: %s", queue, dead, reason)

    def heartbeat(self) -> None:
        """Push the deadline of every message this channel holds a lease ahead, at most
        every third of the lease (so a long task keeps its message)."""
        now = time.monotonic()
        if now < self._next_heartbeat or os.getpid() != self.qos._owner_pid:
            return
        self._next_heartbeat = now + float(self.lease_seconds) / 3
        if self.qos._delivered:
            self.store.renew(self.holder, time.time() + float(self.lease_seconds))

    def drain_events(self, timeout: float | None = None, callback: Any = None) -> Any:
        """kombu's, after the heartbeat: it runs even when the prefetch window is full."""
        self.heartbeat()
        return super().drain_events(timeout=timeout, callback=callback)

    def _sweep_if_due(self) -> bool:
        """Release lapsed claims at most once per ``sweep_interval``; True if any came back."""
        now = time.monotonic()
        if now < self._next_sweep:
            return False
        self._next_sweep = now + float(self.sweep_interval)
        return self.qos.restore_visible() > 0

    def _poll(self, cycle: Any, callback: Any, timeout: float | None = None) -> Any:
        """Claim from the active queues, unless nothing was committed since the last empty round.

        An idle consumer then costs one ``PRAGMA data_version`` read per polling interval
        instead of one write-locking claim per queue, which would contend with producers.
        """
        swept = self._sweep_if_due()
        version = self.store.version()
        if version == self._idle_version and not swept:
            raise Empty()
        try:
            return cycle.get(callback)
        except Empty:
            self._idle_version = version
            raise

    def _reset_cycle(self) -> None:
        """Poll the new set of queues at once: the idle shortcut only holds for the old set."""
        self._idle_version = None
        super()._reset_cycle()

    def basic_consume(
        self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any
    ) -> Any:
        """Consume from ``queue``; with ``no_ack`` its messages are deleted as they are read."""
        if no_ack:
            self._no_ack_queues.add(queue)
        self.store.mark_consumed(queue)
        return super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)

    def basic_cancel(self, consumer_tag: str) -> Any:
        """Stop consuming and forget the queue's no_ack mode."""
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue not in self._tag_to_queue.values():
            self._no_ack_queues.discard(queue)
        return result

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> virtual.Message | None:
        """Fetch one message synchronously, or None; with ``no_ack`` it is deleted as it is read."""
        try:
            message = self.Message(self._fetch(queue, no_ack), channel=self)
        except Empty:
            return None
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    # -- publishing -------------------------------------------------------------------------

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        """Append ``message`` to ``queue``."""
        self.store.put([queue], self._get_message_priority(message), dumps(message))

    def _put_fanout(
        self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any
    ) -> None:
        """Copy ``message`` into every queue bound to ``exchange``, in one transaction,
        keeping capped queues (event listeners') within their ``x-max-length``."""
        queues = sorted(self._lookup(exchange, routing_key))
        if queues:
            self.store.put_capped(queues, self._get_message_priority(message), dumps(message))

    # -- queues -----------------------------------------------------------------------------

    def prepare_queue_arguments(self, arguments: Any, **kwargs: Any) -> Any:
        """Queue options (``max_length``...) as RabbitMQ's ``x-`` arguments, as kombu's
        Redis and AMQP transports pass them; ``x-max-length`` is honoured here."""
        return to_rabbitmq_queue_arguments(arguments, **kwargs)

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        max_length = (kwargs.get("arguments") or {}).get("x-max-length")
        self.store.declare_queue(queue, int(max_length) if max_length is not None else None)

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return self.store.has_queue(queue)

    def _size(self, queue: str) -> int:
        return self.store.size(queue)

    def _purge(self, queue: str) -> int:
        return self.store.purge(queue)

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self.store.delete_queue(queue)

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        """Delete ``queue`` with its messages and bindings, even if another process bound it.

        kombu's version only visits the bindings this process declared, so a queue bound
        elsewhere would keep its messages.
        """
        if if_empty and self._size(queue):
            return
        self._delete(queue)

    # -- exchanges and bindings -------------------------------------------------------------

    def exchange_declare(
        self,
        exchange: str | None = None,
        type: str = "direct",
        durable: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        nowait: bool = False,
        passive: bool = False,
    ) -> None:
        """Declare ``exchange`` here and record its type for producers in other processes."""
        super().exchange_declare(exchange, type, durable, auto_delete, arguments, nowait, passive)
        if not passive:
            type = type or "direct"
            self.store.declare_exchange(exchange or f"amq.{type}", type)

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        """Delete ``exchange``, its bindings, and the empty queues bound to it (kombu's rule)."""
        super().exchange_delete(exchange, if_unused=if_unused, nowait=nowait)
        self.store.delete_exchange(exchange)

    def typeof(self, exchange: str, default: str = "direct") -> ExchangeType:
        """The exchange's type as declared here, else as declared by any process."""
        try:
            type_ = self.state.exchanges[exchange]["type"]
        except KeyError:
            type_ = self.store.exchange_type(exchange) or default
        # kombu swaps its class-level map of types for instances bound to the channel.
        return cast(ExchangeType, self.exchange_types[type_])

    def get_table(self, exchange: str) -> list[tuple[str, str | None, str]]:
        """The exchange's bindings from every process, as ``(routing_key, pattern, queue)``."""
        return self.store.table(exchange)

    def queue_bind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Persist a binding so producers in every process route through it.

        The file is the only routing table: kombu's in-memory one would go stale when
        another process deletes the queue, and its "already bound" shortcut would then
        skip writing the binding back.
        """
        exchange = exchange or "amq.direct"
        routing_key, pattern, queue = self.typeof(exchange).prepare_bind(
            queue, exchange, routing_key, arguments
        )
        self.store.bind(exchange, routing_key, pattern, queue)

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Remove a binding for every process."""
        self.store.unbind(exchange or "amq.direct", routing_key, queue)

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Release this channel's unacked messages (kombu's restore), then close the file."""
        super().close()
        self.store.close()


def warn_if_never_consumed(channel: Channel, queue: str) -> None:
    """Log one warning, once per process and queue, when no consumer has ever consumed
    ``queue`` from ``channel``'s file: a worker that resolved another data directory would
    leave the message (and the sender's ``get()``) waiting for ever."""
    key = (channel.store.path, queue)
    if key in _checked_queues:
        return
    _checked_queues.add(key)
    if not channel.store.ever_consumed(queue):
        log.warning(
            "No worker has consumed queue %r of the embedded broker %s yet: the message "
            "waits there until one does. Start a worker for this app (flowq -A module:app "
            "worker, from any directory), or give producer and worker the same data_dir / "
            "FLOWQ_DATA_DIR.", queue, channel.store.path)


def _delivered_message(claimed: Claimed, tag: str | None) -> dict[str, Any]:
    """Decode a claimed row into kombu's message dict, stamped with this delivery's facts
    (UndecodableEntry if it is not one).

    The tag is per claim, not the one given at publish: a fanout copies one message into
    several rows, and a lapsed claim must not be ackable once the message is claimed again.
    """
    message = envelope.decode(claimed.payload)
    properties = message["properties"]
    if tag is not None:
        properties["delivery_tag"] = tag
    info = properties["delivery_info"]
    info["redelivered"] = claimed.deliveries > 1
    info["delivery_count"] = claimed.deliveries
    return message


class Transport(virtual.Transport):
    """kombu transport for a SQLite broker file; pass it as ``Connection(transport=...)``."""

    Channel = Channel

    polling_interval = 0.01
    driver_type = "sqlite"
    driver_name = "sqlite3"

    #: "database is locked" after ``busy_timeout``, or a file that cannot be opened: worth
    #: kombu's reconnect-and-retry, unlike a malformed statement or a corrupt file.
    connection_errors = virtual.Transport.connection_errors + (  # type: ignore[assignment]
        sqlite3.OperationalError,
    )

    implements = virtual.Transport.implements.extend(
        exchange_type=frozenset(["direct", "topic", "fanout"]),
    )

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.path = database_path(client.virtual_host)

    def driver_version(self) -> str:
        return sqlite3.sqlite_version

    def heartbeat_check(self, connection: Any, rate: int = 2) -> None:
        """Renew every channel's leases (kombu's heartbeat hook; the worker calls it)."""
        for channel in list(self.channels):
            channel.heartbeat()
