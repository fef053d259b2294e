"""Which task ids have a message in a broker queue, looked at without taking anything.

Stuck-workflow detection asks it. Redis and the embedded broker can be read in place: a
Redis queue is a list per priority level (plus kombu's ``unacked`` hash of messages
delivered and not yet acknowledged), the embedded one a table holding waiting and claimed
messages alike. RabbitMQ cannot show a queue without delivering from it, so a RabbitMQ
queue is known only to be empty or not: a non-empty one is *blind*, and callers treat a
task waiting in it as possibly queued.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
from kombu.transport import redis as kombu_redis

from flowq.runtime.transports.sqlite import Channel as SqliteChannel

if TYPE_CHECKING:
    from flowq.app import Flowq

#: Messages read per queue at most; a longer queue counts as blind past that.
PEEK_LIMIT = 100_000
_CHUNK = 1000


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
        if isinstance(channel, kombu_redis.Channel):
            return _redis(channel, queues, wanted)
        if isinstance(channel, SqliteChannel):
            return _sqlite(channel, queues, wanted)
    sizes = app.control.queue_sizes(queues)
    return Peek(frozenset(), frozenset(name for name, size in sizes.items() if size != 0))


def _redis(channel: Any, queues: list[str], wanted: Collection[str]) -> Peek:
    client = channel.client
    found: set[str] = set()
    blind: set[str] = set()
    for queue in queues:
        seen = 0
        for pri in channel.priority_steps:
            key = channel._q_for_pri(queue, pri)
            for start in range(0, PEEK_LIMIT, _CHUNK):
                chunk = client.lrange(key, start, start + _CHUNK - 1)
                found.update(_ids(chunk, wanted))
                seen += len(chunk)
                if len(chunk) < _CHUNK:
                    break
        if seen >= PEEK_LIMIT:
            blind.add(queue)
    # delivered, not acked: [message, exchange, routing key] per delivery tag
    for _, raw in client.hscan_iter(channel.unacked_key, count=_CHUNK):
        try:
            message = json.loads(raw)[0]
        except (ValueError, IndexError, TypeError, KeyError):
            continue
        found.update(_ids([message], wanted))
    return Peek(frozenset(found), frozenset(blind))


def _sqlite(channel: Any, queues: list[str], wanted: Collection[str]) -> Peek:
    found: set[str] = set()
    blind: set[str] = set()
    for queue in queues:
        payloads = channel.store.payloads(queue, PEEK_LIMIT + 1)
        if len(payloads) > PEEK_LIMIT:
            blind.add(queue)
        found.update(_ids(payloads, wanted))
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
