"""Broker connections and queue declarations, all through kombu.

URLs: ``redis://`` (kombu's Redis transport), ``amqp://`` (RabbitMQ), ``memory://``
(one process only) and ``sqlite:///path`` (the embedded default, a kombu transport of
ours). ``None`` means the embedded default under the app's ``data_dir``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import Any

from kombu import Connection, Exchange, Queue

from flowq.settings import Settings, mask_url

DEAD_LETTER_SUFFIX = ".dead"
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
    kwargs: dict[str, Any] = {}
    scheme = url.split("://", 1)[0]
    if scheme in ("redis", "rediss"):
        # one Redis list per priority level, so all ten levels (0-9) are distinct
        options.setdefault("priority_steps", list(range(10)))
        # kombu guards its restore of unacked messages with a lock held 300 s by default;
        # a worker killed while holding it would stop redeliveries that long
        options.setdefault("unacked_mutex_expire", 5)
    if scheme == "redis":  # (rediss keeps kombu's own, which sets up TLS from the scheme)
        from flowq.runtime.transports.redis import Transport as RedisTransport

        kwargs["transport"] = RedisTransport
    if scheme in ("amqp", "amqps", "pyamqp") and conf.broker_publish_confirm:
        options.setdefault("confirm_publish", True)
    return Connection(url, transport_options=options, heartbeat=10 if scheme.startswith(
        ("amqp", "pyamqp")) else 0, **kwargs)


def describe(conf: Settings) -> str:
    """The broker URL with the password masked, for messages and logs."""
    return mask_url(broker_url(conf)) or "?"


def task_queue(name: str, max_priority: int | None = 9) -> Queue:
    """The durable queue ``name`` behind a direct exchange of the same name."""
    arguments = {"x-max-priority": max_priority} if max_priority else None
    return Queue(name, Exchange(name, "direct", durable=True), routing_key=name,
                 durable=True, queue_arguments=arguments)


def dead_letter_queue(name: str) -> Queue:
    """Where messages from ``name`` that must not run are kept, with their reason."""
    dead = name + DEAD_LETTER_SUFFIX
    return Queue(dead, Exchange(dead, "direct", durable=True), routing_key=dead, durable=True)
