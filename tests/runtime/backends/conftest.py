"""Backends under test: memory, SQLite in a temporary directory, the real Redis, and a
Redis Cluster of the test run's own (``redis_cluster`` in tests/conftest.py).

The Redis tests use db 1 of the server at 127.0.0.1:6379, a fresh key prefix per test,
and delete their keys afterwards (on the cluster too). Without a reachable Redis they fail
when ``CI`` is set (so CI cannot pass with nothing running) and are skipped otherwise.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from flowq.runtime.backends.base import ResultBackend
from flowq.runtime.backends.memory import MemoryBackend
from flowq.runtime.backends.redis import RedisBackend
from flowq.runtime.backends.redis_cluster import RedisClusterBackend
from flowq.runtime.backends.sqlite import SqliteBackend
from tests.redis_cluster import RedisClusterServers

REDIS_URL = "redis://127.0.0.1:6379/1"


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError as error:
        message = f"Redis at {REDIS_URL} is not reachable: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_URL


@pytest.fixture
def key_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"flowq-test-{uuid.uuid4().hex}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_backend(redis_url: str, key_prefix: str) -> Iterator[RedisBackend]:
    backend = RedisBackend(redis_url, key_prefix=key_prefix)
    yield backend
    backend.close()


@pytest.fixture
def cluster_backend(redis_cluster: RedisClusterServers) -> Iterator[RedisClusterBackend]:
    prefix = f"flowq-test-{uuid.uuid4().hex}:"
    backend = RedisClusterBackend(redis_cluster.url, key_prefix=prefix)
    yield backend
    backend.close()
    redis_cluster.delete_matching(f"{prefix}*")


def _make(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> ResultBackend:
    if kind in ("redis", "redis-cluster"):
        backend: ResultBackend = request.getfixturevalue(
            "redis_backend" if kind == "redis" else "cluster_backend")
        return backend
    if kind == "sqlite":
        return SqliteBackend(tmp_path / "backend" / "results.db")
    return MemoryBackend()


@pytest.fixture(params=["memory", "sqlite", "redis", "redis-cluster"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultBackend]:
    """Each implementation in turn: the contract suite runs once per backend."""
    made = _make(request.param, request, tmp_path)
    yield made
    made.close()


@pytest.fixture(params=["sqlite", "redis", "redis-cluster"])
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultBackend]:
    """The backends that several processes can share."""
    made = _make(request.param, request, tmp_path)
    yield made
    made.close()

