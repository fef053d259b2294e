"""Result backends: where task results, chord counts and workflow state live.

:func:`backend_from_url` picks the implementation from the URL's scheme.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from flowq.exceptions import ConfigurationError
from flowq.runtime import cluster_url
from flowq.runtime.backends.base import ResultBackend
from flowq.runtime.backends.memory import MemoryBackend
from flowq.runtime.backends.sqlite import SqliteBackend
from flowq.settings import mask_url

SCHEMES = ("redis://", "rediss://", *cluster_url.SCHEMES, "memory://", "sqlite:///")

_memory_backends: dict[str, MemoryBackend] = {}
_memory_lock = threading.Lock()


def backend_from_url(url: str | None, *, data_dir: str = ".flowq",
                     **options: Any) -> ResultBackend:
    """The result backend for ``url``, with ``options`` passed to its constructor.

    - ``redis://[:password@]host:port/db``, ``rediss://...``: :class:`RedisBackend`;
    - ``redis-cluster://[:password@]host:port[,host:port...]``, ``rediss-cluster://...``:
      :class:`RedisClusterBackend`, on a Redis Cluster;
    - ``memory://[name]``: one :class:`MemoryBackend` per URL in this process, so every
      use of the same URL sees the same store;
    - ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``: :class:`SqliteBackend`;
    - None: the embedded default, ``SqliteBackend(<data_dir>/results.db)``.

    Raises ConfigurationError for any other scheme.
    """
    if url is None:
        return SqliteBackend(os.path.join(data_dir, "results.db"), **options)
    if url.startswith(("redis://", "rediss://")):
        from flowq.runtime.backends.redis import RedisBackend  # imports redis-py on demand
        return RedisBackend(url, **options)
    if cluster_url.is_cluster_url(url):
        from flowq.runtime.backends.redis_cluster import RedisClusterBackend
        return RedisClusterBackend(url, **options)
    if url.startswith("memory://"):
        with _memory_lock:
            if url not in _memory_backends:
                _memory_backends[url] = MemoryBackend(url, **options)
            return _memory_backends[url]
    if url.startswith("sqlite:"):
        path = url.removeprefix("sqlite:///")
        if path == url or not path:
            raise ConfigurationError(f"result backend {url!r} has no file path; use "
                                     f"sqlite:///relative/path.db or sqlite:////absolute/path.db")
        return SqliteBackend(path, **options)
    scheme = url.partition("://")[0] if "://" in url else url
    raise ConfigurationError(
        f"unsupported result backend {mask_url(url)!r} (scheme {scheme!r}); use one of "
        f"{', '.join(SCHEMES)}, or None for the embedded SQLite default")


__all__ = ["SCHEMES", "ResultBackend", "backend_from_url"]
