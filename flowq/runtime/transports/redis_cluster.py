"""flowq's Redis transport on a Redis Cluster: ``redis-cluster://``, ``rediss-cluster://``.

The layout, the scripts and the guarantees are the single server's (:mod:`.redis`,
:mod:`.redis_streams`): every key of a queue carries the queue's name as its hash tag, so
a queue lives in one slot and each script touches that slot alone. What a cluster changes:

* the client is a :class:`redis.cluster.RedisCluster` (URLs: :mod:`flowq.runtime.cluster_url`);
* a blocking read covers one queue, since one ``XREADGROUP`` may not span slots: a
  consumer of n queues keeps n reads in flight, each on a connection of its own to the
  master of its queue's slot, all waited on at once (a message is picked up the moment
  it arrives on any of them; ``bench/redis_cluster_reads.py`` measures this against a
  short poll);
* a read told its slot moved (``MOVED``, after a resharding or a failover) reloads the
  slot map and reads again from the slot's new master; one told the slot is moving
  (``ASK``) waits a moment and reads again;
* fanout (remote control, events) is classic PUB/SUB, which a cluster broadcasts to
  every node; there is one database (0), and kombu's old list layout is not looked for
  (kombu's Redis transport never ran on a cluster).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, cast

import redis
from redis.cluster import RedisCluster

from flowq.runtime import cluster_url
from flowq.runtime.transports import redis as single
from flowq.runtime.transports import redis_channel
from flowq.runtime.transports.redis_routing import Routing

__all__ = ["Channel", "Transport"]

#: Seconds a queue's read waits after ASK (its slot is being migrated) before it reads again.
MIGRATION_PAUSE = 0.1


class Channel(redis_channel.Channel):
    """A consumer on a cluster: one blocking read per queue."""

    connection: Transport
    kombu_upgrade = False

    def __init__(self, connection: single.Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._paused: dict[str, float] = {}  # queue -> when its read may start again

    def _read_failed(self, reader: redis_channel.Reader, error: redis.ResponseError) -> None:
        if not isinstance(error, redis.exceptions.AskError):  # (MovedError is one too)
            super()._read_failed(reader, error)
            return
        group = next(group for group, held in self._readers.items() if held is reader)
        self._readers.pop(group).drop()
        if isinstance(error, redis.exceptions.MovedError):
            # The slot has another master now: learn the new map, read from there.
            redis_channel.log.info("Read of %s moved (%s); reading from the slot's new "
                                   "master", ", ".join(group), error)
            cast(RedisCluster, self.client).nodes_manager.initialize()
        else:  # the slot is moving right now: read again once it has moved
            for queue in group:
                self._paused[queue] = time.monotonic() + MIGRATION_PAUSE

    def reading_paused(self, queue: str) -> bool:
        return self._paused.get(queue, 0.0) > time.monotonic()

    def next_due(self) -> float:
        return min([super().next_due(), *self._paused.values()])


class Transport(single.Transport):
    """kombu transport for flowq's Redis layout on a Redis Cluster."""

    Channel = Channel
    #: kombu hands the URL over whole: its parser reads one host, a cluster URL lists many.
    can_parse_url = True

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self._cluster: RedisCluster | None = None

    def make_client(self, channel: Routing) -> Any:
        if self._cluster is None:
            conninfo: Any = self.client  # kombu's Connection; hostname: the whole URL
            # redis-py's cluster retries stay on: they follow MOVED replies and failovers.
            self._cluster = cluster_url.connect(
                cluster_url.parse_cluster_url(conninfo.hostname), protocol=2,
                socket_timeout=float(channel.socket_timeout),
                socket_connect_timeout=float(channel.socket_connect_timeout))
        return self._cluster

    def read_groups(self, channel: Routing, queues: list[str]) -> list[list[str]]:
        """One group per queue (one ``XREADGROUP`` may not span slots), but none for a
        queue whose slot is being migrated, for a moment."""
        paused = cast(Channel, channel).reading_paused
        return [[queue] for queue in queues if not paused(queue)]

    def open_reader(self, channel: Routing, queues: Sequence[str]) -> Any:
        client = cast(RedisCluster, channel.client)
        node = client.get_node_from_key(channel.keys.stream(queues[0], 0))
        return client.get_redis_connection(node).connection_pool.make_connection()

    def database(self) -> int:
        return 0

    def close_connection(self, connection: Any) -> None:
        super().close_connection(connection)
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
