"""Broker connections and queue declarations, all through kombu.

URLs: ``redis://`` and ``rediss://`` (flowq's Redis transport), ``amqp://`` (RabbitMQ),
``memory://`` (one process only) and ``sqlite:///path`` (the embedded default). ``None``
means the embedded default under the app's ``data_dir``. flowq's own transports (Redis,
SQLite) hold a message a consumer took under a lease of ``broker_lease_seconds``.
"""

from __future__ import annotations

import os
from typing import Any

from kombu import Connection, Exchange, Queue

import flowq.runtime  # noqa: F401 - registers flowq's transports with kombu
from flowq.settings import Settings, mask_url

DEAD_LETTER_SUFFIX = ".dead"
#: URL schemes of flowq's transports, whose consumers hold messages under a lease.
LEASED = ("redis", "rediss", "sqlite")
#: Header of a dead letter saying why it was not run (``Type: message``).
REASON_HEADER = "x-flowq-reason"


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
        "interval_start": 0.1, "interval_step": 0.5, "interval_max": 2.0,
        **conf.broker_transport_options}
    scheme = url.split("://", 1)[0]
    if scheme in LEASED:
        options.setdefault("lease_seconds", conf.broker_lease_seconds)
    if scheme in ("amqp", "amqps", "pyamqp") and conf.broker_publish_confirm:
        options.setdefault("confirm_publish", True)
    return Connection(url, transport_options=options, heartbeat=10 if scheme.startswith(
        ("amqp", "pyamqp")) else 0)


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
