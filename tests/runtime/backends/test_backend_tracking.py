"""The tracking part of the result-backend contract (the index of recent workflows and
their progress counts), run against every implementation like the rest of the contract."""

from __future__ import annotations

import os
import time

import pytest
import redis

from flowq.runtime.backends.base import ChordPart, Progress, ResultBackend
from flowq.states import FAILURE, RETRY, REVOKED, STARTED, SUCCESS

LONG = 60  # seconds: outlives any test
REDIS_URL = "redis://127.0.0.1:6379/3"


@pytest.fixture(scope="module")
def redis_url() -> str:
    """These tests' Redis database (the conftest's fixtures take their keys from it)."""
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.ConnectionError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is not reachable: {error}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {error}")
    return REDIS_URL


def track(backend: ResultBackend, root_id: str, created: float, keep: int = 100,
          expires: float | None = LONG) -> None:
    backend.track_workflow(root_id, created, f"summary of {root_id}".encode(),
                           f"detail of {root_id}".encode(), expires, keep)


def test_recent_workflows_are_listed_newest_first_with_their_summaries(
        backend: ResultBackend) -> None:
    now = time.time()
    for n, root_id in enumerate(["a", "b", "c"]):
        track(backend, root_id, now + n)
    listed = backend.recent_workflows(10)
    assert [(e.root_id, e.created, e.summary) for e in listed] == [
        ("c", now + 2, b"summary of c"), ("b", now + 1, b"summary of b"),
        ("a", now, b"summary of a")]
    assert [e.root_id for e in backend.recent_workflows(2)] == ["c", "b"]
    assert backend.workflow_detail("b") == b"detail of b"
    assert backend.workflow_detail("missing") is None


def test_the_index_keeps_only_the_newest_entries(backend: ResultBackend) -> None:
    now = time.time()
    for n in range(8):
        track(backend, f"w{n}", now + n, keep=5)
    assert [e.root_id for e in backend.recent_workflows(100)] == [
        "w7", "w6", "w5", "w4", "w3"]


def test_entries_older_than_their_expiry_leave_the_index(backend: ResultBackend) -> None:
    now = time.time()
    track(backend, "old", now - 120, expires=LONG)  # sent before the expiry window
    track(backend, "new", now, expires=LONG)
    assert [e.root_id for e in backend.recent_workflows(10)] == ["new"]


def test_an_expired_summary_drops_its_entry(backend: ResultBackend) -> None:
    track(backend, "short", time.time(), expires=0.2)
    assert [e.root_id for e in backend.recent_workflows(10)] == ["short"]
    time.sleep(0.4)
    assert backend.recent_workflows(10) == []
    assert backend.tracked_workflows(["short"]) == [None]
    assert backend.workflow_detail("short") is None


def test_tracked_workflows_are_found_by_root_id_in_order(backend: ResultBackend) -> None:
    now = time.time()
    track(backend, "a", now)
    track(backend, "b", now + 1)
    found = backend.tracked_workflows(["b", "missing", "a"])
    assert [None if e is None else (e.root_id, e.created) for e in found] == [
        ("b", now + 1), None, ("a", now)]
    assert found[0] is not None and found[0].progress == Progress()


def test_first_terminal_records_count_once_in_their_workflow(backend: ResultBackend) -> None:
    track(backend, "root", time.time())
    before = time.time()
    backend.store("n1", STARTED, b"", tracked="root")  # not terminal: not counted
    backend.store("n1", RETRY, b"", tracked="root")
    backend.store("n1", SUCCESS, b"1", tracked="root", expires=LONG)
    backend.store("n1", SUCCESS, b"again", tracked="root")  # a duplicate: not new
    backend.store("n2", FAILURE, b"boom", tracked="root", expires=LONG)
    backend.store("n3", SUCCESS, b"untracked")
    (entry,) = backend.tracked_workflows(["root"])
    assert entry is not None
    assert dict(entry.progress.counts) == {SUCCESS: 1, FAILURE: 1}
    assert entry.progress.done == 2
    assert entry.progress.updated is not None
    assert before - 1 <= entry.progress.updated <= time.time() + 1


def test_store_many_counts_only_the_records_it_writes(backend: ResultBackend) -> None:
    track(backend, "root", time.time())
    backend.store("done", SUCCESS, b"", tracked="root")
    backend.store_many([("done", FAILURE, b""), ("a", FAILURE, b""), ("b", REVOKED, b""),
                        ("c", FAILURE, b"")], expires=LONG, tracked="root")
    backend.store_many([("a", FAILURE, b""), ("c", FAILURE, b"")], tracked="root")
    (entry,) = backend.tracked_workflows(["root"])
    assert entry is not None
    assert dict(entry.progress.counts) == {SUCCESS: 1, FAILURE: 2, REVOKED: 1}


def test_a_chord_member_counts_with_its_part(backend: ResultBackend) -> None:
    track(backend, "root", time.time())
    backend.chord_init([("j", 2)], expires=LONG)
    for index in (0, 1, 1):  # the last one is a redelivered duplicate
        outcome = backend.store(f"m{index}", SUCCESS, b"v", tracked="root", expires=LONG,
                                part=ChordPart("j", index, 2, b"v", f"m{index}"))
    assert outcome.joined == (b"v", b"v")  # the claimant's retry still sees the join
    (entry,) = backend.tracked_workflows(["root"])
    assert entry is not None and dict(entry.progress.counts) == {SUCCESS: 2}


def test_delay_pending_names_the_ids_with_a_delayed_message(backend: ResultBackend) -> None:
    due = time.time() + 3600
    backend.delay_add([(due, "a:0", b"A"), (due, "b:2", b"B"), (due, "ab:0", b"AB")])
    assert backend.delay_pending(["a", "b", "c", "a:"]) == {"a", "b"}
    assert backend.delay_pending([]) == set()
    backend.delay_done(["b:2"])
    assert backend.delay_pending(["a", "b"]) == {"a"}
