"""Backend operations behind workflow handles and resume, run against every backend.

Part of the result-backend contract (see ``test_backend_contract.py``); Redis runs on
database 14 here, with a fresh key prefix per test.
"""

from __future__ import annotations

import os

import pytest
import redis

from flowq.runtime.backends.base import ResultBackend

LONG = 60


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Database 14 instead of the contract suite's (this module's own tests)."""
    url = "redis://127.0.0.1:6379/14"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.ConnectionError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {url} is not reachable: {error}")
        pytest.skip(f"Redis at {url} is not reachable: {error}")
    return url


def test_put_blobs_stores_each_and_overwrites(backend: ResultBackend) -> None:
    backend.put_blob("b:0", b"old")
    backend.put_blobs([(f"b:{i}", b"v%d" % i) for i in range(1500)], expires=LONG)
    assert [backend.get_blob(f"b:{i}") for i in (0, 1, 999, 1000, 1499)] == [
        b"v0", b"v1", b"v999", b"v1000", b"v1499"]
    assert backend.get_blob("b:1500") is None
