"""The broker side of flowq's Redis transport: queues, exchanges, bindings, publishing.

A queue is declared once (its streams, consumer group and options: see
:mod:`.redis_streams`); a direct or topic exchange routes by bindings stored in Redis
(kombu's table format) and exchange types are recorded there too, so a producer routes to
queues another process declared. A message goes to its queue's stream of its priority with
``XADD … NOMKSTREAM``: a queue that does not exist takes nothing (a mandatory message
declares it again). A fanout exchange is a PUB/SUB channel: a broadcast reaches the
listeners subscribed at the time and is stored nowhere (remote control and events want
exactly that; a listener's ``x-max-length`` has nothing to bound). kombu's
``Producer.batch`` sends many publishes in one pipeline.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import redis
from kombu.exceptions import BatchPublishError
from kombu.transport import virtual
from kombu.transport.base import to_rabbitmq_queue_arguments
from kombu.transport.virtual.exchange import ExchangeType

from flowq.runtime.keys import DEFAULT_PREFIX, BrokerKeys
from flowq.runtime.transports import envelope
from flowq.runtime.transports.redis_legacy import KombuLeftovers
from flowq.runtime.transports.redis_streams import StreamQueues, text

if TYPE_CHECKING:
    from flowq.runtime.transports.redis import Transport

log = logging.getLogger("flowq.broker")

#: Separator of a binding's parts (kombu's, so its table format is kept).
SEP = "\x06\x16"
#: What a publish needs: (queue, priority, kombu message JSON, mandatory).
Item = tuple[str, int, str, bool]


class Routing(virtual.Channel):
    """A kombu channel whose queues, exchanges and bindings live in Redis."""

    connection: Transport

    supports_fanout = True
    lease_seconds: float = 10.0
    key_prefix: str = DEFAULT_PREFIX
    kombu_upgrade: bool = True
    socket_timeout: float = 30.0
    socket_connect_timeout: float = 5.0

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self.client = connection.make_client(self)
        self.client.ping()  # an unreachable server fails here, as kombu expects
        self.keys = BrokerKeys(self.key_prefix)
        self.streams = StreamQueues(self.client, self.keys)
        self.leftovers = KombuLeftovers(self.client, self.keys) if self.kombu_upgrade else None
        self.db = connection.database()
        self._options: dict[str, tuple[int | None, int | None] | None] = {}
        self._types: dict[str, str] = {}
        self._fanout: dict[str, str] = {}  # fanout-bound queue -> exchange

    @property
    def lease_ms(self) -> int:
        return int(float(self.lease_seconds) * 1000)

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

    def _publish(self, target: Any, item: Item) -> Any:
        queue, priority, payload, _ = item
        options = self._options_of(queue)
        return self.streams.publish(target, queue, priority, payload,
                                    options[0] if options else None)

    def unroutable(self, item: Item) -> None:
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
                self._types[exchange] = text(stored) if stored else default
            type_ = self._types[exchange]
        # kombu swaps its class-level map of types for instances bound to the channel
        return cast(ExchangeType, self.exchange_types[type_])

    def get_table(self, exchange: str) -> list[tuple[str, str | None, str]]:
        """The exchange's bindings from every process, as ``(routing_key, pattern, queue)``."""
        table = []
        for member in self.client.smembers(self.keys.bindings(exchange)):
            routing_key, pattern, queue = text(member).split(SEP)
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


class PublishBatch:
    """Publishes buffered in one pipeline, flushed by kombu's ``Producer.batch``."""

    def __init__(self, channel: Routing, max_size: int):
        self.channel = channel
        self.max_size = max_size
        self.pipeline = channel.client.pipeline(transaction=False)
        self._items: list[Item | None] = []
        self._failed: BaseException | None = None

    def publish(self, message: dict[str, Any], **kwargs: Any) -> Any:
        if self._failed is not None:
            raise BatchPublishError("Redis publish batch cannot be reused after a "
                                    "failure") from self._failed
        return self.channel.basic_publish(message, _publish_batch=self, **kwargs)

    def add(self, item: Item) -> None:
        self.channel._publish(self.pipeline, item)
        self.added(item)

    def added(self, item: Item | None) -> None:
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

