"""Revocations by stamp: what ``revoke_by_stamped_headers`` accepts, how a revoked stamp
matches a task's stamps, and that every backend keeps them (and their signal) apart from
revoked ids. Real workers: tests/integration/test_stamping.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from flowq.exceptions import ConfigurationError
from flowq.runtime import revoked_stamps
from flowq.runtime.backends.base import ResultBackend
from flowq.runtime.backends.memory import MemoryBackend
from flowq.runtime.backends.redis import RedisBackend
from flowq.runtime.backends.sqlite import SqliteBackend
from flowq.runtime.revoked_stamps import RevokedStamps

REDIS_URL = "redis://127.0.0.1:6379/10"  # this module's database


def test_celerys_header_shapes_are_accepted_and_bad_stamps_refused():
    assert revoked_stamps.normalized({"run": "r1", "ids": ["a", "b"]}) == {
        "run": ["r1"], "ids": ["a", "b"]}
    with pytest.raises(ConfigurationError, match="needs a dict"):
        revoked_stamps.normalized({})
    with pytest.raises(ConfigurationError, match="must be a JSON value"):
        revoked_stamps.entries({"run": object()})
    with pytest.raises(ConfigurationError, match="name of a call option"):
        revoked_stamps.entries({"queue": "q"})


def test_a_task_is_revoked_when_any_of_its_stamp_values_is():
    revoked = RevokedStamps.of({"run": ["r1", "r2"], "n": 3})
    assert revoked.match({"run": "r2"}) == {"run": "r2"}
    assert revoked.match({"other": "r1", "n": 3}) == {"n": 3}
    assert revoked.match({"run": ["x", "r1"]}) == {"run": "r1"}  # an appended stamp
    assert revoked.match({"run": "r3", "n": 4}) is None
    assert revoked.match({"n": "3"}) is None  # compared as JSON: "3" is not 3
    assert revoked.match({}) is None and not RevokedStamps()
    assert revoked.union(RevokedStamps.of({"run": "r3"})).match({"run": "r3"})


@pytest.fixture(params=["memory", "sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ResultBackend]:
    if request.param == "memory":
        yield MemoryBackend(f"memory://stamps-{uuid.uuid4().hex}")
        return
    if request.param == "sqlite":
        made = SqliteBackend(str(tmp_path / "results.db"))
        yield made
        made.close()
        return
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is not reachable: {error}")
        pytest.skip(f"Redis is not reachable: {error}")
    prefix = f"flowq-test-stamps-{uuid.uuid4().hex[:8]}:"
    made = RedisBackend(REDIS_URL, key_prefix=prefix)
    yield made
    made.close()
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{prefix}*"))
    if keys:
        client.delete(*keys)


def test_backends_keep_revoked_stamps_apart_from_revoked_ids(backend):
    backend.revoke(["task-1", *revoked_stamps.entries({"run": ["r1", "r 2"]})], expires=60)
    backend.revoke_and_terminate(["task-2", *revoked_stamps.entries({"batch": 7})], 9,
                                 expires=60)
    revocations = backend.revocations()
    assert revocations.ids == {"task-1", "task-2"}
    assert revocations.terminate == {"task-2": 9}
    assert revocations.stamps.match({"run": "r 2"}) == {"run": "r 2"}
    assert revocations.stamps.match({"batch": 7}) == {"batch": 7}  # revoked, and killed:
    assert set(revocations.terminate_stamps) == {9}
    assert revocations.terminate_stamps[9].match({"batch": 7}) == {"batch": 7}
    assert revocations.terminate_stamps[9].match({"run": "r1"}) is None
