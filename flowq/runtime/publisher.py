"""Publishing task messages: size checks, queue declaration, retries, the delay index.

A message whose eta is in the future is not sent to the broker: it waits in the result
backend's delay index (a sorted set on Redis) and a worker moves it to its queue when
due, so delayed tasks never sit unacked in worker memory nor get redelivered because a
visibility timeout ran out.
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from amqp.exceptions import ChannelError
from kombu import Connection, Producer
from kombu.exceptions import BatchPublishError, OperationalError

from flowq.exceptions import BrokerUnavailable, PublishRejected
from flowq.runtime import broker
from flowq.runtime.backends.base import ResultBackend
from flowq.runtime.message import Outgoing, PublishPolicy, check_size
from flowq.runtime.transports.sqlite import warn_if_never_consumed
from flowq.settings import Settings

#: A message due within this many seconds is published right away.
DELAY_THRESHOLD = 0.05
#: Messages per pipelined round trip when publishing a group or chord header.
BATCH_SIZE = 500
#: AMQP's reply code for a ``mandatory`` message no queue took.
NO_ROUTE = 312


class Publisher:
    """Publishes :class:`Outgoing` messages for one process; thread-safe."""

    def __init__(self, conf: Settings, backend: ResultBackend):
        self.conf = conf
        self.backend = backend
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._declared: set[str] = set()
        url = broker.broker_url(conf)
        # Messages are mandatory: on RabbitMQ one no queue takes comes back instead of
        # vanishing; on Redis the queue it finds missing is declared again.
        self._mandatory = url.startswith(("amqp://", "amqps://", "pyamqp://", "redis://",
                                          "rediss://", "redis-cluster://", "rediss-cluster://"))
        self._embedded = url.startswith("sqlite:")

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = broker.connect(self.conf, retry=False)  # see _send_retrying
        return self._connection

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send ``messages``; delayed ones go to the delay index. Raises before sending
        anything if one is too large."""
        for message in messages:
            self.check_size(message)
        now = time.time()
        ready: list[Outgoing] = []
        delayed: list[tuple[float, str, bytes]] = []
        for message in messages:
            if message.eta is not None and message.eta > now + DELAY_THRESHOLD:
                delayed.append((message.eta, delay_key(message), encode_delayed(message)))
            else:
                ready.append(message)
        if delayed:
            self.backend.delay_add(delayed)
        if ready:
            self.send_now(ready)

    def send_now(self, messages: Sequence[Outgoing]) -> None:
        """Put ``messages`` on their queues now, retrying on a dropped connection."""
        with self._lock:
            try:
                self._send_retrying(messages)
            except OperationalError as exc:
                self._reset()
                raise BrokerUnavailable(
                    f"could not publish to {broker.describe(self.conf)}: {exc}") from None
            except Exception as exc:
                mismatch = broker.declaration_mismatch(exc)
                if mismatch is not None:
                    self._reset()
                    raise mismatch from None
                if type(exc).__name__ in ("MessageNacked", "ChannelError"):
                    self._reset()
                    raise PublishRejected(f"broker refused a message: {exc}") from None
                raise

    def _send_retrying(self, messages: Sequence[Outgoing]) -> None:
        """Send; on a dropped connection reconnect and send again as the first message's
        publish policy (or the settings') allows (a message sent twice is harmless: task
        ids make the second a no-op)."""
        policy = messages[0].policy or self._policy
        for attempt in itertools.count():
            try:
                self._send(messages)
                return
            except (*self.connection.recoverable_connection_errors, BatchPublishError,
                    OperationalError) as exc:
                if policy.max_retries is not None and attempt >= policy.max_retries:
                    raise OperationalError(str(exc)) from exc
                self._reset()
                time.sleep(policy.wait(attempt))

    @property
    def _policy(self) -> PublishPolicy:
        """The settings' publish policy: ``broker_connection_max_retries`` retries, or
        none without ``broker_connection_retry``."""
        conf = self.conf
        return PublishPolicy(
            max_retries=conf.broker_connection_max_retries if conf.broker_connection_retry else 0)

    def _send(self, messages: Sequence[Outgoing]) -> None:
        producer = self._get_producer()
        # A batch becomes one pipelined round trip on Redis; other transports send as usual.
        with producer.batch(max_size=BATCH_SIZE):
            for message in messages:
                try:
                    self._publish(producer, message)
                except ChannelError as exc:
                    if getattr(exc, "reply_code", None) != NO_ROUTE:
                        raise
                    self._redeclare_and_publish(producer, message)

    def _publish(self, producer: Producer, message: Outgoing) -> None:
        # the default exchange ("") routes straight to the queue named by the routing key:
        # no binding lookup (one Redis round trip less per message); a caller's own
        # exchange routes by its bindings, and its queues are the caller's to declare
        default = not message.exchange
        producer.publish(message.body, exchange=message.exchange,
                         routing_key=message.routing_key or message.queue,
                         headers=message.headers, content_type=message.content_type,
                         content_encoding=message.content_encoding,
                         priority=message.priority,
                         correlation_id=message.id, delivery_mode=2,
                         declare=self._declare(message.queue) if default else [],
                         mandatory=self._mandatory)
        if self._embedded and default:
            warn_if_never_consumed(producer.channel, message.queue)

    def _redeclare_and_publish(self, producer: Producer, message: Outgoing) -> None:
        """A message came back unroutable: its queue was deleted since this process
        declared it. Declare it again (past kombu's cache of declared entities) and
        resend once; a second return is an error. A message for a caller's own exchange
        that no binding routes is an error at once."""
        if message.exchange:
            raise PublishRejected(f"RabbitMQ returned the message for exchange "
                                  f"{message.exchange!r} (routing key {message.routing_key!r}) "
                                  f"as unroutable: no queue is bound to take it")
        broker.task_queue_for(self.conf, message.queue)(producer.channel).declare()
        try:
            self._publish(producer, message)
        except ChannelError as exc:
            raise PublishRejected(f"RabbitMQ returned the message for queue "
                                  f"{message.queue!r} as unroutable twice: {exc}") from exc

    def _get_producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(self.connection.default_channel)
        return self._producer

    def _declare(self, queue: str) -> list[Any]:
        if queue in self._declared:
            return []
        self._declared.add(queue)
        return [broker.task_queue_for(self.conf, queue)]

    def _reset(self) -> None:
        self._declared.clear()
        self._producer = None
        if self._connection is not None:
            try:
                self._connection.release()
            finally:
                self._connection = None

    def check_size(self, message: Outgoing) -> None:
        """Raise MessageTooLarge for headers or a body over the configured budget."""
        check_size(message.headers, message.body, self.conf.message_header_limit,
                   self.conf.message_body_limit, advice=True)

    def close(self) -> None:
        with self._lock:
            self._reset()


def delay_key(message: Outgoing) -> str:
    return f"{message.id}:{message.headers.get('retries', 0)}"


def encode_delayed(message: Outgoing) -> bytes:
    """A delayed message as bytes for the delay index (its publish policy is the
    mover's, not the sender's)."""
    doc = {"queue": message.queue, "headers": message.headers,
           "body": base64.b64encode(message.body).decode(),
           "content_type": message.content_type,
           "content_encoding": message.content_encoding, "priority": message.priority}
    if message.exchange:
        doc["exchange"] = message.exchange
    if message.routing_key and message.routing_key != message.queue:
        doc["routing_key"] = message.routing_key
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_delayed(payload: bytes) -> Outgoing:
    doc = json.loads(payload)
    return Outgoing(doc["queue"], doc["headers"], base64.b64decode(doc["body"]),
                    doc["content_type"], doc["content_encoding"], doc.get("priority"),
                    exchange=doc.get("exchange", ""), routing_key=doc.get("routing_key"))
