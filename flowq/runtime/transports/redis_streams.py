"""The Redis side of flowq's Redis transport: each queue is a set of streams with a group.

Layout, for a queue ``tasks`` under the default prefix (names from
:class:`flowq.runtime.keys.BrokerKeys`)::

    flowq:{tasks}:p9 ... flowq:{tasks}:p0   one stream per priority; entry field "m" is
                                            kombu's message JSON ("w": a wake-up after
                                            messages were given back, no message)
    flowq:{tasks}:wake                      string: a wake-up was sent this second
    flowq:{tasks}:meta                      hash: the queue exists; max_length, expires
    group "flowq" on every stream           consumers read with XREADGROUP; a message a
                                            consumer took is in the group's pending list
                                            under its name until acknowledged

A message is always in exactly one of three places, and each move between them is one
atomic command or script: *ready* (in the stream after the group's last-delivered id, or
pending under the placeholder consumer ``flowq.released``), *held* (pending under a live
consumer, which renews its lease by heartbeat) or *gone* (acknowledged: XACK + XDEL). A
consumer that stops heartbeating for its lease has its messages taken over by the next
consumer that looks (XPENDING IDLE + XCLAIM), which counts the delivery: the pending
list's delivery counter is each message's delivery count.

Every multi-command step is a script in ``lua/`` whose header lists its keys; each touches
the keys of one queue only (one hash slot on a Redis Cluster). Nothing here knows kombu.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any, NamedTuple

import redis

from flowq.runtime.keys import PRIORITY_LEVELS, BrokerKeys

__all__ = ["GROUP", "Entry", "Reader", "StreamQueues", "text"]

#: The consumer group of every stream.
GROUP = "flowq"
#: The consumer that holds released messages until a real consumer takes them.
RELEASED = "flowq.released"
#: Idle time given to released messages: longer than any lease, so they count as lapsed.
RELEASED_IDLE_MS = 10 * 365 * 86400 * 1000
#: Messages a purge deletes per script call (each call blocks Redis while it runs).
PURGE_BATCH = 2000

_LUA = resources.files(__package__).joinpath("lua")
_SCRIPTS = ("declare", "take", "release", "renew", "size", "purge", "prune")


class Entry(NamedTuple):
    """A message a consumer took: where it is, how often it was delivered, its fields."""

    queue: str
    stream: int  # 1-based position among the queue's streams (1: priority 9)
    id: str
    deliveries: int
    fields: list[bytes]

    @property
    def priority(self) -> int:
        return PRIORITY_LEVELS - self.stream


class StreamQueues:
    """The operations on queues (streams + group) over one Redis client."""

    def __init__(self, client: redis.Redis, keys: BrokerKeys):
        self.client = client
        self.keys = keys
        self._scripts = {name: client.register_script(_LUA.joinpath(f"{name}.lua").read_text())
                         for name in _SCRIPTS}

    def _run(self, name: str, queue: str, args: Sequence[Any],
             client: Any = None) -> Any:
        return self._scripts[name](self.keys.streams(queue), list(args), client=client)

    # -- queues -------------------------------------------------------------------------------

    def declare(self, queue: str, max_length: int | None = None,
                expires_ms: int | None = None) -> bool:
        """Create the queue's streams and group (if need be) and record its options;
        True if it did not exist."""
        keys = [self.keys.meta(queue), *self.keys.streams(queue)]
        args = [GROUP, "" if max_length is None else int(max_length),
                "" if expires_ms is None else int(expires_ms)]
        return bool(self._scripts["declare"](keys, args))

    def exists(self, queue: str) -> bool:
        return bool(self.client.exists(self.keys.meta(queue)))

    def options(self, queue: str) -> tuple[int | None, int | None] | None:
        """``(max_length, expires_ms)`` as declared, or None if the queue does not exist."""
        declared, max_length, expires = self.client.hmget(
            self.keys.meta(queue), "declared", "max_length", "expires")
        if declared is None:
            return None
        return (None if max_length is None else int(max_length),
                None if expires is None else int(expires))

    def touch(self, queue: str, expires_ms: int) -> None:
        """Push back the expiry of a queue declared with x-expires (it is in use)."""
        pipe = self.client.pipeline(transaction=False)
        for key in (self.keys.meta(queue), *self.keys.streams(queue)):
            pipe.pexpire(key, expires_ms)
        pipe.execute()

    def delete(self, queue: str) -> None:
        """Delete the queue, its messages (held ones too) and its bindings."""
        bound_key = self.keys.queue_bindings(queue)
        bindings = self.client.smembers(bound_key)
        pipe = self.client.pipeline(transaction=False)
        for binding in bindings:
            exchange, _, member = text(binding).partition("\x06\x16")
            pipe.srem(self.keys.bindings(exchange), member)
        # (a command, not .delete(): a Redis Cluster's pipelines refuse several keys there,
        # though these share the queue's slot)
        pipe.execute_command("DEL", self.keys.meta(queue), bound_key, self.keys.wake(queue),
                             *self.keys.streams(queue))
        pipe.execute()

    def size(self, queue: str, lease_ms: int) -> int:
        """Ready messages (held ones excluded, lapsed ones included)."""
        return int(self._run("size", queue, [GROUP, lease_ms]))

    def purge(self, queue: str, lease_ms: int) -> int:
        """Delete the ready messages; return how many."""
        total = 0
        while True:
            deleted = int(self._run("purge", queue, [GROUP, lease_ms, PURGE_BATCH]))
            total += deleted
            if deleted < PURGE_BATCH:
                return total

    def prune(self, queue: str, idle_ms: int) -> int:
        """Forget consumer names that hold nothing and were idle ``idle_ms``."""
        return int(self._run("prune", queue, [GROUP, idle_ms]))

    # -- messages -----------------------------------------------------------------------------

    def publish(self, target: Any, queue: str, priority: int, payload: str,
                max_length: int | None) -> Any:
        """Queue ``XADD`` of one message on ``target`` (the client, or a pipeline); its
        reply is the entry id, or None when the queue does not exist (NOMKSTREAM)."""
        trim = ("MAXLEN", "=", int(max_length)) if max_length is not None else ()
        return target.execute_command(
            "XADD", self.keys.stream(queue, min(max(priority, 0), PRIORITY_LEVELS - 1)),
            "NOMKSTREAM", *trim, "*", "m", payload)

    def take(self, queue: str, consumer: str, count: int, lease_ms: int,
             acks: Sequence[tuple[int, str]] = ()) -> list[Entry]:
        """Acknowledge ``acks`` (stream, id) of ``queue``, then take up to ``count``
        messages for ``consumer``, lapsed ones first when ``lease_ms`` > 0."""
        args: list[Any] = [GROUP, consumer, count, lease_ms, len(acks)]
        for stream, entry_id in acks:
            args += [stream, entry_id]
        reply = self._run("take", queue, args)
        return [Entry(queue, int(reply[n]), text(reply[n + 1]), int(reply[n + 2]),
                      list(reply[n + 3])) for n in range(0, len(reply), 4)]

    def release(self, queue: str, consumer: str,
                entries: Sequence[tuple[int, str]] | None = None, leave: bool = False) -> int:
        """Make messages ``consumer`` holds ready again at once, in their place; with
        ``entries`` None, all of them (and with ``leave`` the consumer leaves the group)."""
        mode = "some" if entries is not None else ("leave" if leave else "all")
        args: list[Any] = [GROUP, consumer, RELEASED, RELEASED_IDLE_MS, mode]
        for stream, entry_id in entries or ():
            args += [stream, entry_id]
        keys = [*self.keys.streams(queue), self.keys.wake(queue)]
        return int(self._scripts["release"](keys, args))

    def renew(self, queue: str, consumer: str) -> int:
        """Renew the lease of what ``consumer`` holds in ``queue``; return how many."""
        return int(self._run("renew", queue, [GROUP, consumer]))

    # -- the blocking read --------------------------------------------------------------------

    def read_command(self, queues: Sequence[str], consumer: str, count: int,
                     block_ms: int) -> tuple[list[Any], dict[bytes, tuple[str, int]]]:
        """``XREADGROUP … BLOCK`` over every stream of ``queues`` (highest priority first)
        and the map from stream key to (queue, stream number) to read its reply with."""
        streams: dict[bytes, tuple[str, int]] = {}
        for queue in queues:
            for number, key in enumerate(self.keys.streams(queue), 1):
                streams[key.encode()] = (queue, number)
        command = ["XREADGROUP", "GROUP", GROUP, consumer, "COUNT", count, "BLOCK", block_ms,
                   "STREAMS", *streams, *([">"] * len(streams))]
        return command, streams

    @staticmethod
    def parse_read(reply: Any, streams: dict[bytes, tuple[str, int]]) -> list[Entry]:
        """The entries of an XREADGROUP reply (RESP2), highest priority first."""
        entries: list[Entry] = []
        for key, items in reply or ():
            queue, number = streams[key]
            entries += [Entry(queue, number, text(entry_id), 1, list(fields or ()))
                        for entry_id, fields in items]
        entries.sort(key=lambda entry: entry.stream)
        return entries


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



def text(value: bytes | str) -> str:
    """A reply as text (replies are bytes: the client does not decode them)."""
    return value.decode() if isinstance(value, bytes) else value
