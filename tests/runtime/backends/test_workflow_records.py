"""Backend operations behind workflow handles and resume, run against every backend.

Part of the result-backend contract (see ``test_backend_contract.py``); Redis runs on
database 14 here, with a fresh key prefix per test.
"""

from __future__ import annotations

import os
import time

import pytest
import redis

from flowq.runtime.backends.base import ChordPart, Record, ResultBackend
from flowq.states import FAILURE, STARTED, SUCCESS

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


def part(join_id: str, index: int, size: int, value: bytes | None) -> ChordPart:
    return ChordPart(join_id, index, size, value, f"{join_id}-m{index}")


def test_chord_reset_keeps_exactly_the_parts_given(backend: ResultBackend) -> None:
    # Given a chord of 3 whose member 1 failed (so it can never complete)
    backend.chord_init([("c", 3)], expires=LONG)
    backend.store("c-m0", SUCCESS, b"r0", part=part("c", 0, 3, b"v0"), expires=LONG)
    failed = backend.store("c-m1", FAILURE, b"boom", part=part("c", 1, 3, None), expires=LONG)
    assert failed.first_failure
    # When it is reset to the parts that succeeded (and one given anew)
    backend.chord_reset([("c", 3, {0: b"v0", 2: b"v2"})], expires=LONG)
    assert backend.chord_values("c") == {0: b"v0", 2: b"v2"}
    # Then the member that runs again (its record reset first, as resume does) completes it,
    # with every value in index order
    backend.reset(["c-m1"])
    done = backend.store("c-m1", SUCCESS, b"r1", part=part("c", 1, 3, b"v1"), expires=LONG)
    assert done.joined == (b"v0", b"v1", b"v2") and not done.first_failure
    # and a reset also revives a chord that was lost (expired, deleted)
    backend.chord_reset([("gone", 2, {})], expires=LONG)
    assert backend.store("g0", SUCCESS, b"", part=part("gone", 0, 2, b"a"), expires=LONG
                         ).joined is None
    assert backend.store("g1", SUCCESS, b"", part=part("gone", 1, 2, b"b"), expires=LONG
                         ).joined == (b"a", b"b")


def test_reset_deletes_records_flags_counters_and_uncounts_once(
        backend: ResultBackend) -> None:
    backend.track_workflow("root", time.time(), b"{}", b"", LONG, 10)
    for task_id, state in (("ok", SUCCESS), ("bad", FAILURE), ("after", FAILURE)):
        backend.store(task_id, state, b"x", expires=LONG, tracked="root")
    backend.store("item", FAILURE, b"x", expires=LONG)  # a fanout item: never counted
    backend.store("busy", STARTED, b"x", expires=LONG)  # unfinished: never counted
    assert backend.set_flag("adv:bad", expires=LONG)
    backend.incr("deliveries:bad:0", expires=LONG)
    before = backend.tracked_workflows(["root"])[0].progress
    # When the failed ones are reset, twice (a resume repeated after a crash)
    for _ in range(2):
        backend.reset(["bad", "after", "busy"], tracked="root", uncounted=["item"],
                      flags=["adv:bad"], counters=["deliveries:bad:0"])
    # Then their records, the flag and the counter are gone; the success stays
    assert backend.get_many(["ok", "bad", "after", "item", "busy"]) == [
        Record(SUCCESS, b"x"), None, None, None, None]
    assert not backend.has_flag("adv:bad") and backend.set_flag("adv:bad", expires=LONG)
    assert backend.incr("deliveries:bad:0", expires=LONG) == 1
    # and the progress lost the two failures exactly once
    progress = backend.tracked_workflows(["root"])[0].progress
    assert {state: n for state, n in progress.counts.items() if n} == {SUCCESS: 1}
    assert progress.updated is not None and progress.updated >= (before.updated or 0)
    # And a record written again counts again
    backend.store("bad", SUCCESS, b"y", expires=LONG, tracked="root")
    assert backend.tracked_workflows(["root"])[0].progress.counts[SUCCESS] == 2
