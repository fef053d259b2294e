"""Redis Cluster URLs, and the redis-py cluster client they describe.

One form serves both the broker and the result backend::

    redis-cluster://[[user]:password@]host:port[,host:port...][/0][?key_prefix=...]
    rediss-cluster://...   (TLS)

The hosts are seeds: any reachable one is enough for the client to learn every master
(``CLUSTER SLOTS``), and more of them let it start while some are down. A cluster has one
database, 0. (Not ``redis+cluster://``: kombu reads a ``+`` in a scheme as a transport
prefix.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from flowq.exceptions import ConfigurationError
from flowq.settings import mask_url

if TYPE_CHECKING:
    from redis.cluster import RedisCluster

SCHEMES = ("redis-cluster://", "rediss-cluster://")


def transient_errors() -> tuple[type[Exception], ...]:
    """Failures worth retrying on a cluster: a dropped connection, or the cluster
    reconfiguring (a failover, a slot migration in progress). (redis-py is imported only
    once a cluster is used.)"""
    import redis

    return (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
            redis.exceptions.TryAgainError)


def is_cluster_url(url: str | None) -> bool:
    return bool(url) and url.startswith(SCHEMES)  # type: ignore[union-attr]


@attrs.frozen(slots=True)
class ClusterAddress:
    """What a cluster URL says: seed nodes, credentials, TLS and the query parameters."""

    nodes: tuple[tuple[str, int], ...]
    username: str | None
    password: str | None
    tls: bool
    query: tuple[tuple[str, str], ...]

    def option(self, name: str) -> str | None:
        """The last value of query parameter ``name``, or None."""
        values = [value for key, value in self.query if key == name]
        return values[-1] if values else None


def parse_cluster_url(url: str) -> ClusterAddress:
    """Read a ``redis-cluster://`` URL; ConfigurationError naming what is wrong."""
    shown = mask_url(url)
    parts = urlsplit(url)
    if f"{parts.scheme}://" not in SCHEMES:
        raise ConfigurationError(f"{shown!r} is not a Redis Cluster URL; use "
                                 f"redis-cluster://host:port[,host:port...]")
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    nodes = tuple(_node(entry, shown) for entry in hosts.split(",") if entry)
    if not nodes:
        raise ConfigurationError(f"Redis Cluster URL {shown!r} names no node; give at least "
                                 f"one host:port")
    database = parts.path.strip("/")
    if database not in ("", "0"):
        raise ConfigurationError(f"Redis Cluster URL {shown!r} names database {database!r}; a "
                                 f"cluster has only database 0 (use key_prefix to share it)")
    return ClusterAddress(nodes, username, password, parts.scheme == "rediss-cluster",
                          tuple(parse_qsl(parts.query, keep_blank_values=True)))


def _node(entry: str, shown: str | None) -> tuple[str, int]:
    host, colon, port = entry.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ConfigurationError(f"Redis Cluster URL {shown!r}: {entry!r} is not host:port")
    return host.strip("[]"), int(port)


def connect(address: ClusterAddress, **options: Any) -> RedisCluster:
    """A cluster client seeded with every node of ``address``; ``options`` go to
    :class:`redis.cluster.RedisCluster` (``socket_timeout``, ``retry``...)."""
    from redis.cluster import ClusterNode, RedisCluster

    return RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in address.nodes],
                        username=address.username, password=address.password,
                        ssl=address.tls, **options)


def check_prefix(prefix: str) -> str:
    """``prefix`` if it has no hash tag of its own, which would pull every key of flowq into
    one slot and defeat the tags flowq places; ConfigurationError otherwise."""
    if "{" in prefix or "}" in prefix:
        raise ConfigurationError(f"key prefix {prefix!r} contains '{{' or '}}'; on a Redis "
                                 f"Cluster flowq places the hash tags itself, so leave them out "
                                 f"of the prefix")
    return prefix
