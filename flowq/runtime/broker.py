"""Broker connections and queue declarations, all through kombu.

URLs: ``redis://`` and ``rediss://`` (flowq's Redis transport; ``redis-cluster://`` and
``rediss-cluster://`` on a Redis Cluster), ``amqp://`` (RabbitMQ),
``memory://`` (one process only) and ``sqlite:///path`` (the embedded default). ``None``
means the embedded default under the app's ``data_dir``. flowq's own transports (Redis,
SQLite) hold a message a consumer took under a lease of ``broker_lease_seconds``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator, Mapping
from typing import Any

from kombu import Connection, Exchange, Queue

import flowq.runtime  # noqa: F401 - registers flowq's transports with kombu
from flowq.exceptions import ConfigurationError
from flowq.settings import Settings, mask_url

DEAD_LETTER_SUFFIX = ".dead"
#: URL schemes of flowq's transports, whose consumers hold messages under a lease.
LEASED = ("redis", "rediss", "redis-cluster", "rediss-cluster", "sqlite")
#: Header of a dead letter saying why it was not run (``Type: message``).
REASON_HEADER = "x-flowq-reason"
AMQP_SCHEMES = ("amqp://", "amqps://", "pyamqp://")
#: AMQP's reply code for a declaration that contradicts the existing entity.
PRECONDITION_FAILED = 406
#: Seconds before the first retry of a connection, added per retry, and at most.
RETRY_START, RETRY_STEP, RETRY_MAX = 0.1, 0.5, 2.0


def retry_delays() -> Iterator[float]:
    """The pauses between connection attempts: 0.1, 0.6, 1.1, 1.6, then 2 s for ever."""
    return (min(RETRY_START + RETRY_STEP * n, RETRY_MAX) for n in itertools.count())


def embedded_broker_url(data_dir: str) -> str:
    return f"sqlite:///{os.path.join(data_dir, 'broker.db')}"


def broker_url(conf: Settings) -> str:
    """The configured broker URL, or the embedded default's."""
    return conf.broker_url or embedded_broker_url(conf.data_dir)


def connect(conf: Settings, url: str | None = None, retry: bool = True) -> Connection:
    """A new (lazy) kombu connection to the broker. Without ``retry`` it tries once to
    connect, for callers that retry under a policy of their own."""
    url = url or broker_url(conf)
    options: dict[str, Any] = {
        # bounded connection retries: an unreachable broker is an error, not a hang
        "max_retries": (conf.broker_connection_max_retries
                        if retry and conf.broker_connection_retry else 0),
        "interval_start": RETRY_START, "interval_step": RETRY_STEP, "interval_max": RETRY_MAX,
        **conf.broker_transport_options}
    scheme = url.split("://", 1)[0]
    if scheme in LEASED:
        if conf.broker_lease_seconds <= 0:
            raise ConfigurationError(
                f"broker_lease_seconds must be more than 0 (how long a worker's hold on a "
                f"message outlives its last heartbeat; default 10), got "
                f"{conf.broker_lease_seconds!r}")
        options.setdefault("lease_seconds", conf.broker_lease_seconds)
    if scheme in ("amqp", "amqps", "pyamqp") and conf.broker_publish_confirm:
        options.setdefault("confirm_publish", True)
    return Connection(url, transport_options=options, heartbeat=10 if scheme.startswith(
        ("amqp", "pyamqp")) else 0)


def describe(conf: Settings) -> str:
    """The broker URL with the password masked, for messages and logs."""
    return mask_url(broker_url(conf)) or "?"


def task_queue(name: str, max_priority: int | None = 9, *,
               quorum_delivery_limit: int | None = None) -> Queue:
    """The durable queue ``name`` behind a direct exchange of the same name.

    With ``quorum_delivery_limit`` it is a RabbitMQ quorum queue: replicated, without
    priorities (quorum queues refuse ``x-max-priority``), and one that dead-letters a
    message to ``<name>.dead`` once it has been returned more than that many times.
    """
    arguments: dict[str, Any] | None
    if quorum_delivery_limit is None:
        arguments = {"x-max-priority": max_priority} if max_priority else None
    else:
        dead = name + DEAD_LETTER_SUFFIX
        arguments = {"x-queue-type": "quorum", "x-delivery-limit": quorum_delivery_limit,
                     "x-dead-letter-exchange": dead, "x-dead-letter-routing-key": dead}
    return Queue(name, Exchange(name, "direct", durable=True), routing_key=name,
                 durable=True, queue_arguments=arguments)


def dead_letter_queue(name: str, *, quorum: bool = False) -> Queue:
    """Where messages from ``name`` that must not run are kept, with their reason."""
    dead = name + DEAD_LETTER_SUFFIX
    return Queue(dead, Exchange(dead, "direct", durable=True), routing_key=dead, durable=True,
                 queue_arguments={"x-queue-type": "quorum"} if quorum else None)


def quorum_queues(conf: Settings) -> bool:
    """Whether the app's task queues are quorum queues (``broker_queue_type``; RabbitMQ
    only: other brokers have no queue types and ignore the setting)."""
    return conf.broker_queue_type == "quorum" and broker_url(conf).startswith(AMQP_SCHEMES)


def task_queue_for(conf: Settings, name: str) -> Queue:
    """:func:`task_queue` as the app's settings declare it: its priority levels, or a
    quorum queue whose delivery limit is ``task_max_deliveries``.

    The worker fails a late-acked message itself on its ``task_max_deliveries + 1``-th
    delivery (:func:`quorum_deliveries`), the last one RabbitMQ makes, so the broker's
    own dead-lettering is only a backstop for a worker dying in that very delivery.
    """
    if quorum_queues(conf):
        return task_queue(name, quorum_delivery_limit=conf.task_max_deliveries)
    return task_queue(name, conf.task_queue_max_priority)


def dead_letter_queue_for(conf: Settings, name: str) -> Queue:
    """:func:`dead_letter_queue` of the app's queue type."""
    return dead_letter_queue(name, quorum=quorum_queues(conf))


def declaration_mismatch(error: BaseException) -> ConfigurationError | None:
    """The error to raise instead of RabbitMQ's refusal to declare a queue that exists with
    other arguments (PRECONDITION_FAILED, "inequivalent arg"); None for any other error."""
    text = str(error)
    if getattr(error, "reply_code", None) != PRECONDITION_FAILED or "inequivalent arg" not in text:
        return None
    return ConfigurationError(
        f"{text.partition(' - ')[2] or text}. The queue exists with other arguments than "
        f"this process declares: broker_queue_type, and task_max_deliveries (quorum) or "
        f"task_queue_max_priority (classic), must be the same in every process that uses "
        f"it; to change them, drain and delete the queue (and its .dead queue), or use "
        f"another queue name")


def quorum_deliveries(headers: Mapping[str, Any] | None) -> int | None:
    """How many times a quorum queue has delivered a message, this delivery included.

    RabbitMQ's ``x-delivery-count`` counts the earlier deliveries that came back (rejected,
    or held by a consumer that went away); older versions leave it out of the first one.
    """
    count = (headers or {}).get("x-delivery-count", 0)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return None
    return count + 1
