"""flowq's Redis transport for kombu: Redis Streams, consumer groups, leases with heartbeats.

Registered with kombu for ``redis://`` and ``rediss://`` (importing :mod:`flowq.runtime`
does it), so everything above kombu is unchanged. The parts:

* :mod:`.redis_streams`: how queues live in Redis, and why a message is always in exactly
  one place (ready, held by a live consumer, or gone), each move atomic;
* :mod:`.redis_channel`: a consumer (a kombu channel): its reads, acks, lease, upkeep;
* :mod:`.redis_routing`: publishing, exchanges, bindings, fanout;
* :mod:`.redis_legacy`: moving what kombu's list transport left into the streams;
* this module: the kombu transport, where the Redis client is made, and the consumer's
  loop that waits on every channel's reads at once.

A redelivered message carries ``delivery_info['redelivered']`` and
``delivery_info['delivery_count']`` (deliveries so far, this one included).

Transport options (``broker_transport_options``):

=========================  =======  =====================================================
``lease_seconds``             10.0  a consumer's hold on what it took, renewed every
                                    third of it (``broker_lease_seconds`` sets it)
``block_seconds``              1.0  longest wait of one blocking read
``sweep_interval``             1.0  seconds between looks for lapsed or released messages
``ack_interval``              0.05  seconds acknowledgements may wait to go in one batch
``key_prefix``             flowq:   prefix of every key and channel
``kombu_upgrade``             True  move messages kombu's list transport left into the
                                    streams (standalone Redis)
``socket_timeout``            30.0  seconds a command may take
``socket_connect_timeout``     5.0  seconds to connect
=========================  =======  =====================================================
"""

from __future__ import annotations

import functools
import select
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis
from kombu.transport import virtual
from redis.backoff import NoBackoff
from redis.retry import Retry

from flowq.runtime.transports.redis_channel import Channel, QoS
from flowq.runtime.transports.redis_routing import Routing

__all__ = ["Channel", "QoS", "Transport"]


class Transport(virtual.Transport):
    """kombu transport for flowq's Redis layout (``redis://`` and ``rediss://``)."""

    Channel = Channel

    default_port = 6379  # type: ignore[assignment]
    driver_type = "redis"
    driver_name = "redis"

    connection_errors = virtual.Transport.connection_errors + (  # type: ignore[assignment]
        redis.ConnectionError, redis.TimeoutError, OSError)
    channel_errors = virtual.Transport.channel_errors + (  # type: ignore[assignment]
        redis.ResponseError, redis.DataError)

    implements = virtual.Transport.implements.extend(
        asynchronous=False, exchange_type=frozenset(["direct", "topic", "fanout"]),
        heartbeats=False, batch_publish=True)

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._redis: redis.Redis | None = None

    # The one place a Redis client is made, and the reads it serves (a Redis Cluster
    # variant swaps these).

    def make_client(self, channel: Routing) -> redis.Redis:
        """The client every channel of this connection shares (connections are pooled)."""
        if self._redis is None:
            self._redis = redis.Redis(**self.client_options(channel))
        return self._redis

    def open_reader(self, channel: Routing, queues: Sequence[str]) -> Any:
        """A connection of the channel's own for its blocking reads of ``queues``."""
        return channel.client.connection_pool.make_connection()

    def read_groups(self, channel: Routing, queues: list[str]) -> list[list[str]]:
        """The queues one blocking read may cover together: all of them on one server (a
        cluster reads each slot's queues apart)."""
        return [queues]

    def database(self) -> int:
        """The database number: fanout channels name it (PUB/SUB spans databases)."""
        conninfo: Any = self.client  # kombu's Connection
        return _database(conninfo.virtual_host)

    def client_options(self, channel: Routing) -> dict[str, Any]:
        """redis-py's options from kombu's connection: host, port, database, credentials,
        TLS; redis-py's own retries are off (kombu and flowq retry whole operations)."""
        conninfo: Any = self.client  # kombu's Connection
        options: dict[str, Any] = {
            "host": conninfo.hostname or "127.0.0.1", "port": conninfo.port or self.default_port,
            "db": _database(conninfo.virtual_host), "username": conninfo.userid or None,
            "password": conninfo.password or None, "protocol": 2,
            "socket_timeout": float(channel.socket_timeout),
            "socket_connect_timeout": float(channel.socket_connect_timeout),
            "retry": Retry(NoBackoff(), 0), "health_check_interval": 0}
        if conninfo.ssl or conninfo.transport_cls == "rediss":
            options["ssl"] = True
            if isinstance(conninfo.ssl, dict):
                options.update(conninfo.ssl)
        return options

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        if self._redis is not None:
            self._redis.connection_pool.disconnect()
            self._redis = None

    # -- the consumer's loop ------------------------------------------------------------------

    def drain_events(self, connection: Any, timeout: float | None = None,
                     **kwargs: Any) -> None:
        """Deliver what arrives on any channel within ``timeout`` (None: wait), doing
        each channel's upkeep on the way; TimeoutError (socket.timeout) when nothing came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            waits: dict[Any, Callable[[], bool]] = {}
            for channel in list(self.channels):
                channel.maintain()
                if channel.take_ready():
                    return
                for reader in channel.readers():
                    if reader.has_data() and channel.on_readable(reader):
                        return
                    if reader.busy:
                        waits[reader] = functools.partial(channel.on_readable, reader)
                listener = channel.listener()
                if listener is not None and listener._sock is not None:
                    if listener.can_read(timeout=0) and channel.on_broadcast():
                        return
                    waits[listener._sock] = channel.on_broadcast
            now = time.monotonic()
            due = min((channel.next_due() for channel in self.channels), default=now + 1.0)
            if deadline is not None and deadline <= now:
                raise TimeoutError()
            wait = max(0.0, min(due, deadline if deadline is not None else due) - now)
            # one source at a time: any other still readable is served on the next call
            if any(waits[source]() for source in _wait(list(waits), wait)):
                return

    def heartbeat_check(self, connection: Any, rate: int = 2) -> None:
        """Renew leases and send due acks without reading (kombu's heartbeat hook)."""
        for channel in list(self.channels):
            channel.maintain()


def _wait(sources: list[Any], seconds: float) -> list[Any]:
    """The sources (objects with ``fileno``) readable within ``seconds``."""
    if not sources:
        time.sleep(seconds)
        return []
    readable, _, _ = select.select(sources, [], [], seconds)
    return readable


def _database(virtual_host: str | None) -> int:
    """The database number kombu's URL names (``redis://host/7``: 7; none: 0)."""
    name = (virtual_host or "").strip("/")
    if not name:
        return 0
    try:
        return int(name)
    except ValueError:
        raise ValueError(f"a Redis URL's path is a database number, not {name!r}") from None

