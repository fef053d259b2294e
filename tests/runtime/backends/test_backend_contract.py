"""The result-backend contract, run against every implementation (see conftest.backend).

Each test states one rule of :mod:`flowq.runtime.backends.base`; timings are generous
because only the order of events matters, never their speed.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from flowq import exceptions
from flowq.runtime.backends.base import (
    ChordPart,
    DelayedMessage,
    Record,
    ResultBackend,
    StoreOutcome,
)
from flowq.states import FAILURE, RECEIVED, RETRY, REVOKED, STARTED, SUCCESS

LONG = 60  # seconds: outlives any test


def eventually(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"after {timeout}s: {what}"
        time.sleep(0.05)


def later(delay: float, action: Callable[[], object]) -> threading.Timer:
    timer = threading.Timer(delay, action)
    timer.start()
    return timer


def member(backend: ResultBackend, join_id: str, index: int, size: int, *,
           failed: bool = False, value: bytes | None = None,
           claimant: str | None = None) -> StoreOutcome:
    """Store member ``index`` of chord ``join_id``: its result and its part in one call.

    A member succeeds with ``value`` (default ``v<index>``) unless ``failed``.
    """
    claimant = claimant or f"{join_id}-m{index}"
    value = value or b"v%d" % index
    state, payload = (FAILURE, b"boom") if failed else (SUCCESS, value)
    return backend.store(claimant, state, payload, expires=LONG,
                         part=ChordPart(join_id, index, size, None if failed else value, claimant))


def values(size: int) -> tuple[bytes, ...]:
    return tuple(b"v%d" % index for index in range(size))


# -- results --------------------------------------------------------------------------------


def test_terminal_state_is_write_once(backend: ResultBackend) -> None:
    assert backend.store("t", SUCCESS, b"first").new
    assert not backend.store("t", FAILURE, b"second").new
    assert not backend.store("t", SUCCESS, b"third").new
    assert backend.get("t") == Record(SUCCESS, b"first")


def test_unready_state_overwrites_unready_but_never_terminal(backend: ResultBackend) -> None:
    for state in (RECEIVED, STARTED, RETRY):
        assert backend.store("t", state, state.encode()).new
    assert backend.get("t") == Record(RETRY, b"RETRY")
    assert backend.store("t", REVOKED, b"done").new
    assert not backend.store("t", STARTED, b"late").new
    assert backend.get("t") == Record(REVOKED, b"done")


def test_get_many_keeps_the_order_asked_for(backend: ResultBackend) -> None:
    backend.store("a", SUCCESS, b"A")
    backend.store("b", STARTED, b"B")
    assert backend.get_many(["b", "missing", "a", "b"]) == [
        Record(STARTED, b"B"), None, Record(SUCCESS, b"A"), Record(STARTED, b"B")]
    assert backend.get_many([]) == []


def test_payload_is_opaque_bytes(backend: ResultBackend) -> None:
    payload = bytes(range(256)) + b"\nSUCCESS\n"
    backend.store("t", SUCCESS, payload)
    assert backend.get("t") == Record(SUCCESS, payload)


def test_store_many_writes_new_records_and_keeps_existing_ones(backend: ResultBackend) -> None:
    backend.store("done", SUCCESS, b"kept")
    backend.store("running", STARTED, b"kept")
    backend.store_many([("done", REVOKED, b""), ("running", REVOKED, b""),
                        ("new", REVOKED, b"revoked")], expires=LONG)
    assert backend.get_many(["done", "running", "new"]) == [
        Record(SUCCESS, b"kept"), Record(STARTED, b"kept"), Record(REVOKED, b"revoked")]


def test_forget_deletes_records(backend: ResultBackend) -> None:
    backend.store("a", SUCCESS, b"")
    backend.store("b", SUCCESS, b"")
    backend.forget(["a", "missing"])
    assert backend.get_many(["a", "b"]) == [None, Record(SUCCESS, b"")]
    assert backend.store("a", FAILURE, b"again").new


# -- wait -----------------------------------------------------------------------------------


def test_wait_wakes_when_the_result_arrives(backend: ResultBackend) -> None:
    backend.store("early", SUCCESS, b"1")
    timer = later(0.2, lambda: backend.store("late", SUCCESS, b"2"))
    records = backend.wait(["late", "early", "late"], timeout=30)
    timer.join()
    assert records == [Record(SUCCESS, b"2"), Record(SUCCESS, b"1"), Record(SUCCESS, b"2")]


def test_wait_skips_unready_states(backend: ResultBackend) -> None:
    def progress() -> None:
        backend.store("t", STARTED, b"")
        time.sleep(0.1)
        backend.store("t", FAILURE, b"boom")

    timer = later(0.1, progress)
    assert backend.wait(["t"], timeout=30) == [Record(FAILURE, b"boom")]
    timer.join()


def test_wait_wakes_for_thousands_of_ids_stored_together(backend: ResultBackend) -> None:
    ids = [f"t{n}" for n in range(2500)]
    timer = later(0.2, lambda: backend.store_many([(i, SUCCESS, i.encode()) for i in ids]))
    records = backend.wait(ids, timeout=60)
    timer.join()
    assert records == [Record(SUCCESS, i.encode()) for i in ids]


def test_wait_serves_threads_waiting_at_the_same_time(backend: ResultBackend) -> None:
    ids = [f"t{n}" for n in range(8)]
    timer = later(0.2, lambda: [backend.store(i, SUCCESS, i.encode()) for i in ids])
    with ThreadPoolExecutor(len(ids)) as pool:
        records = list(pool.map(lambda i: backend.wait([i], timeout=30), ids))
    timer.join()
    assert records == [[Record(SUCCESS, i.encode())] for i in ids]


def test_wait_times_out_naming_what_is_pending(backend: ResultBackend) -> None:
    backend.store("done", SUCCESS, b"")
    backend.store("running", STARTED, b"")
    with pytest.raises(exceptions.TimeoutError) as raised:
        backend.wait(["done", "running", "missing"], timeout=0.3)
    assert isinstance(raised.value, TimeoutError)  # the builtin catches it too
    assert "2 of 3 results still pending after waiting 0.3s" in str(raised.value)


def test_wait_returns_finished_results_even_with_no_time_left(backend: ResultBackend) -> None:
    backend.store("done", SUCCESS, b"")
    assert backend.wait(["done"], timeout=0) == [Record(SUCCESS, b"")]
    assert backend.wait([], timeout=0) == []


# -- chords ---------------------------------------------------------------------------------


def test_chord_joins_once_with_values_in_index_order(backend: ResultBackend) -> None:
    backend.chord_init([("j", 3)], expires=LONG)
    assert member(backend, "j", 2, 3).joined is None
    assert member(backend, "j", 0, 3).joined is None
    assert member(backend, "j", 1, 3).joined == values(3)
    assert backend.chord_values("j") == dict(enumerate(values(3)))


def test_the_same_part_twice_counts_once(backend: ResultBackend) -> None:
    backend.chord_init([("j", 2)], expires=LONG)
    first, again = member(backend, "j", 0, 2), member(backend, "j", 0, 2)
    assert (first.new, first.joined) == (True, None)
    assert (again.new, again.joined) == (False, None)
    assert member(backend, "j", 1, 2).joined == values(2)


def test_only_the_claimant_retrying_sees_the_chord_joined_again(backend: ResultBackend) -> None:
    backend.chord_init([("j", 2)], expires=LONG)
    member(backend, "j", 0, 2)
    assert member(backend, "j", 1, 2).joined == values(2)
    assert member(backend, "j", 1, 2).joined == values(2)  # the claimant's retry
    assert member(backend, "j", 0, 2).joined is None  # another member's duplicate


def test_a_failed_member_fails_the_chord_once_and_it_never_joins(backend: ResultBackend) -> None:
    backend.chord_init([("j", 3)], expires=LONG)
    assert member(backend, "j", 0, 3, failed=True).first_failure
    assert not member(backend, "j", 0, 3, failed=True).first_failure
    assert not member(backend, "j", 1, 3, failed=True).first_failure
    last = member(backend, "j", 2, 3)
    assert (last.joined, last.first_failure) == (None, False)
    assert backend.chord_values("j") == {0: None, 1: None, 2: b"v2"}


def test_a_failed_redelivery_keeps_the_first_success(backend: ResultBackend) -> None:
    backend.chord_init([("j", 2)], expires=LONG)
    member(backend, "j", 0, 2)
    assert not member(backend, "j", 0, 2, failed=True).first_failure
    assert member(backend, "j", 1, 2).joined == values(2)


def test_a_chord_grown_waits_for_its_new_parts(backend: ResultBackend) -> None:
    backend.chord_init([("j", 2)], expires=LONG)
    member(backend, "j", 0, 2)
    assert backend.chord_grow("j", "m0:0", 2, expires=LONG) == 2  # parts 2 and 3 added
    assert member(backend, "j", 1, 4).joined is None  # the first two no longer complete it
    assert member(backend, "j", 3, 4).joined is None
    assert member(backend, "j", 2, 4).joined == values(4)


def test_growing_again_with_the_same_claim_grows_once(backend: ResultBackend) -> None:
    backend.chord_init([("j", 1)], expires=LONG)
    assert backend.chord_grow("j", "claim", 1) == 1
    assert backend.chord_grow("j", "claim", 1) == 1  # a retry, or a redelivered task
    assert backend.chord_grow("j", "other", 3) == 2
    member(backend, "j", 0, 5), member(backend, "j", 1, 5), member(backend, "j", 2, 5)
    member(backend, "j", 3, 5)
    assert member(backend, "j", 4, 5).joined == values(5)


def test_a_chord_that_is_gone_complete_or_failed_cannot_grow(backend: ResultBackend) -> None:
    assert backend.chord_grow("nowhere", "c", 1) is None
    backend.chord_init([("done", 1), ("failed", 2)], expires=LONG)
    member(backend, "done", 0, 1)
    member(backend, "failed", 0, 2, failed=True)
    assert backend.chord_grow("done", "c", 1) is None
    assert backend.chord_grow("failed", "c", 1) is None
    assert backend.chord_values("done") == {0: b"v0"}  # its claims are not parts


def test_a_part_for_a_chord_never_created_is_lost(backend: ResultBackend) -> None:
    outcome = member(backend, "nowhere", 0, 2)
    assert (outcome.new, outcome.lost, outcome.joined) == (True, True, None)
    assert member(backend, "nowhere", 1, 2).lost  # no count was started by the first
    assert backend.chord_values("nowhere") == {}


def test_chord_init_keeps_an_existing_chord(backend: ResultBackend) -> None:
    backend.chord_init([("j", 2), ("k", 1)], expires=LONG)
    member(backend, "j", 0, 2)
    backend.chord_init([("j", 2)], expires=LONG)
    assert backend.chord_values("j") == {0: b"v0"}
    assert member(backend, "j", 1, 2).joined == values(2)
    assert member(backend, "k", 0, 1).joined == (b"v0",)


def test_a_part_outside_its_chord_is_refused() -> None:
    with pytest.raises(ValueError, match="index 2"):
        ChordPart("j", 2, 2, b"", "m")


def test_racing_members_complete_the_chord_exactly_once(backend: ResultBackend) -> None:
    size = 24
    backend.chord_init([("j", size)], expires=LONG)
    start = threading.Barrier(size)

    def run(index: int):
        start.wait(timeout=30)
        return member(backend, "j", index, size)

    with ThreadPoolExecutor(size) as pool:
        joined = [o.joined for o in pool.map(run, range(size)) if o.joined is not None]
    assert joined == [values(size)]


def test_racing_on_the_last_part_completes_the_chord_exactly_once(
        backend: ResultBackend) -> None:
    # Given a chord missing its last part, which many claimants deliver at once
    size, racers = 4, 16
    backend.chord_init([("j", size)], expires=LONG)
    for index in range(size - 1):
        member(backend, "j", index, size)
    start = threading.Barrier(racers)

    def race(n: int):
        start.wait(timeout=30)
        return member(backend, "j", size - 1, size, value=b"r%d" % n, claimant=f"racer{n}")

    # When they race
    with ThreadPoolExecutor(racers) as pool:
        joined = [o.joined for o in pool.map(race, range(racers)) if o.joined is not None]
    # Then one wins, and the values hold the winner's part
    assert len(joined) == 1
    assert joined[0][:-1] == values(size - 1)
    assert backend.chord_values("j")[size - 1] == joined[0][-1]


def test_racing_processes_complete_the_chord_exactly_once(
        shared_backend: ResultBackend) -> None:
    # Given a chord whose parts are split across processes, each also racing on the last one
    size, processes = 41, 4
    shared_backend.chord_init([("j", size)], expires=LONG)
    context = multiprocessing.get_context("fork")
    start, joined = context.Barrier(processes), context.Queue()

    def run(first: int) -> None:
        start.wait(timeout=30)
        outcomes = [member(shared_backend, "j", index, size)
                    for index in range(first, size - 1, processes)]
        outcomes.append(member(shared_backend, "j", size - 1, size, claimant=f"last{first}"))
        joined.put([o.joined for o in outcomes if o.joined is not None])

    # When they run at once
    children = [context.Process(target=run, args=(n,)) for n in range(processes)]
    for child in children:
        child.start()
    reports = [joined.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=30)
    # Then exactly one call, in one process, saw the chord complete
    assert [child.exitcode for child in children] == [0] * processes
    assert [joined for report in reports for joined in report] == [values(size)]


# -- flags and blobs ------------------------------------------------------------------------


def test_a_counter_counts_from_one_and_expires(backend: ResultBackend) -> None:
    assert [backend.incr("n", expires=LONG) for _ in range(3)] == [1, 2, 3]
    assert backend.incr("other") == 1
    backend.incr("short", expires=0.2)
    time.sleep(0.5)
    assert backend.incr("short", expires=0.2) == 1


def test_a_flag_is_set_once(backend: ResultBackend) -> None:
    assert not backend.has_flag("f")
    assert backend.set_flag("f", expires=LONG)
    assert not backend.set_flag("f", expires=LONG)
    assert backend.has_flag("f")


def test_blobs_are_stored_overwritten_and_deleted(backend: ResultBackend) -> None:
    assert backend.get_blob("b") is None
    backend.put_blob("b", b"one")
    backend.put_blob("b", b"two", expires=LONG)
    assert backend.get_blob("b") == b"two"
    backend.delete_blob("b")
    backend.delete_blob("b")
    assert backend.get_blob("b") is None


# -- revocations ----------------------------------------------------------------------------


def test_revocations_are_remembered(backend: ResultBackend) -> None:
    assert backend.revoked() == set()
    backend.revoke(["a", "b"])
    backend.revoke(["b", "c"], expires=LONG)
    backend.revoke([])
    assert backend.revoked() == {"a", "b", "c"}


def test_terminating_revocations_are_read_apart(backend: ResultBackend) -> None:
    backend.revoke(["plain"])
    backend.revoke_and_terminate(["running", "root"], 15)
    revocations = backend.revocations()
    assert revocations.ids == {"plain", "running", "root"}
    assert revocations.terminate == {"running": 15, "root": 15}


# -- delay index ----------------------------------------------------------------------------


def test_delayed_messages_are_claimed_when_due_earliest_first(backend: ResultBackend) -> None:
    backend.delay_add([(200.0, "late", b"L"), (100.0, "early", b"E"), (150.0, "mid", b"M")])
    assert backend.delay_count() == 3
    assert backend.delay_due(now=99.0, lease=10, limit=10) == []
    assert backend.delay_due(now=160.0, lease=10, limit=1) == [DelayedMessage("early", b"E")]
    assert backend.delay_due(now=160.0, lease=10, limit=10) == [DelayedMessage("mid", b"M")]
    assert backend.delay_count() == 3  # claimed, not yet done


def test_peeking_shows_the_soonest_items_and_claims_nothing(backend: ResultBackend) -> None:
    backend.delay_add([(200.0, "late", b"L"), (100.0, "early", b"E"), (150.0, "mid", b"M")])
    assert backend.delay_peek(2) == [(100.0, b"E"), (150.0, b"M")]
    assert backend.delay_due(now=120.0, lease=10, limit=10) == [DelayedMessage("early", b"E")]


def test_expediting_makes_every_retry_of_a_task_due_now(backend: ResultBackend) -> None:
    backend.delay_add([(500.0, "t1:0", b"A"), (600.0, "t1:1", b"B"), (500.0, "t10:0", b"C")])
    assert backend.delay_expedite(["t1", "absent"], now=100.0) == 2
    claimed = backend.delay_due(now=100.0, lease=10, limit=10)
    assert sorted(claimed, key=lambda m: m.key) == [DelayedMessage("t1:0", b"A"),
                                                    DelayedMessage("t1:1", b"B")]


def test_the_delay_horizon_is_the_latest_due_time(backend: ResultBackend) -> None:
    assert backend.delay_horizon() is None
    backend.delay_add([(200.0, "late", b"L"), (100.0, "early", b"E")])
    assert backend.delay_horizon() == 200.0
    backend.delay_done(["late"])
    assert backend.delay_horizon() == 100.0


def test_a_claimed_message_returns_only_after_its_lease(backend: ResultBackend) -> None:
    # Given a message claimed at 100 with a 10 s lease
    backend.delay_add([(100.0, "k", b"payload")])
    assert backend.delay_due(now=100.0, lease=10, limit=5) == [DelayedMessage("k", b"payload")]
    # Then nobody claims it within the lease, and anyone may after it (its claimer died)
    assert backend.delay_due(now=109.0, lease=10, limit=5) == []
    assert backend.delay_due(now=110.5, lease=10, limit=5) == [DelayedMessage("k", b"payload")]
    # And once done it is gone
    backend.delay_done(["k", "unknown"])
    assert backend.delay_count() == 0
    assert backend.delay_due(now=1000.0, lease=10, limit=5) == []


# -- leases ---------------------------------------------------------------------------------


def test_a_lease_has_one_owner_at_a_time(backend: ResultBackend) -> None:
    assert backend.acquire_lease("beat", "one", ttl=LONG)
    assert not backend.acquire_lease("beat", "two", ttl=LONG)
    assert backend.acquire_lease("beat", "one", ttl=LONG)  # renewal
    backend.release_lease("beat", "two")  # not the owner: no effect
    assert not backend.acquire_lease("beat", "two", ttl=LONG)
    backend.release_lease("beat", "one")
    assert backend.acquire_lease("beat", "two", ttl=LONG)


# -- expiry ---------------------------------------------------------------------------------


def test_everything_expires_after_its_time(backend: ResultBackend) -> None:
    # Given everything written twice: once expiring in 1 s, once in a minute
    for name, expires in (("short", 1), ("long", LONG)):
        backend.store(name, SUCCESS, b"", expires=expires)
        backend.chord_init([(name, 2)], expires=expires)
        backend.set_flag(name, expires=expires)
        backend.put_blob(name, b"", expires=expires)
        backend.put_blob(f"{name}-touched", b"", expires=expires)
        backend.revoke([name], expires=expires)
        assert backend.acquire_lease(name, "owner", ttl=expires)
    backend.chord_init([("refreshed", 2)], expires=1)
    member(backend, "refreshed", 0, 2)  # a part pushes the chord's expiry to LONG
    backend.touch_blob("short-touched", LONG)  # a touched blob lives on
    backend.touch_blob("long-touched", 1)  # a touch never shortens
    # Then the short ones vanish
    eventually(lambda: backend.get("short") is None, "result expired")
    eventually(lambda: not backend.has_flag("short"), "flag expired")
    eventually(lambda: backend.get_blob("short") is None, "blob expired")
    eventually(lambda: "short" not in backend.revoked(), "revocation expired")
    eventually(lambda: backend.acquire_lease("short", "other", ttl=LONG), "lease taken over")
    assert member(backend, "short", 0, 2).lost
    # And the long ones, and the refreshed chord, stay
    assert backend.get("long") == Record(SUCCESS, b"")
    assert backend.get_blob("short-touched") == b"" and backend.get_blob("long-touched") == b""
    assert backend.has_flag("long")
    assert backend.get_blob("long") == b""
    assert "long" in backend.revoked()
    assert not backend.acquire_lease("long", "other", ttl=LONG)
    assert member(backend, "long", 0, 2).lost is False
    assert member(backend, "refreshed", 1, 2).joined == values(2)
