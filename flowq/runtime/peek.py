"""Which task ids have a message in a broker queue, looked at without taking anything.

Stuck-workflow detection asks it. Redis and the embedded broker can be read in place: a
Redis queue is a stream per priority level and the embedded one a table, each holding
waiting and taken (not yet acknowledged) messages alike. RabbitMQ cannot show a queue without delivering from it, so a RabbitMQ
queue is known only to be empty or not: a non-empty one is *blind*, and callers treat a
task waiting in it as possibly queued.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import attrs

from flowq.runtime.transports.redis_routing import Routing as RedisChannel
from flowq.runtime.transports.sqlite import Channel as SqliteChannel

if TYPE_CHECKING:
    from flowq.app import Flowq

#: Messages read per queue at most; a longer queue counts as blind past that.
PEEK_LIMIT = 100_000


@attrs.frozen(slots=True)
class Peek:
    """``found``: the wanted ids with a message; ``blind``: queues that hold messages
    this broker does not let us read (or more than :data:`PEEK_LIMIT`)."""

    found: frozenset[str]
    blind: frozenset[str]


def queued(app: Flowq, queues: Iterable[str], wanted: Collection[str]) -> Peek:
    """Which of ``wanted`` have a message in ``queues`` (or delivered, not yet acked)."""
    queues = sorted(set(queues))
    with app.control.connection() as connection:
        channel = connection.default_channel
        if isinstance(channel, RedisChannel):
            return _read(channel.streams.payloads, queues, wanted)
        if isinstance(channel, SqliteChannel):
            return _read(channel.store.payloads, queues, wanted)
    sizes = app.control.queue_sizes(queues)
    return Peek(frozenset(), frozenset(name for name, size in sizes.items() if size != 0))


def _read(payloads: Any, queues: list[str], wanted: Collection[str]) -> Peek:
    """Peek with ``payloads(queue, limit)``, the messages of a queue read in place."""
    found: set[str] = set()
    blind: set[str] = set()
    for queue in queues:
        messages = payloads(queue, PEEK_LIMIT + 1)
        if len(messages) > PEEK_LIMIT:
            blind.add(queue)
        found.update(_ids(messages, wanted))
    return Peek(frozenset(found), frozenset(blind))


def _ids(messages: Iterable[Any], wanted: Collection[str]) -> Iterator[str]:
    """The task ids of ``messages`` (kombu envelopes, JSON or decoded) that are wanted."""
    for message in messages:
        if isinstance(message, (bytes, str)):
            try:
                message = json.loads(message)
            except ValueError:
                continue
        headers = message.get("headers") if isinstance(message, dict) else None
        task_id = headers.get("id") if isinstance(headers, dict) else None
        if isinstance(task_id, str) and task_id in wanted:
            yield task_id
