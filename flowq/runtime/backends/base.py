"""The result backend port: what workers and clients need from a store of results.

A backend stores opaque payloads (bytes produced by :mod:`flowq.runtime.results_codec`)
next to a state name; it never decodes a payload. Every operation that must be atomic
is one call here, so each implementation can make it one Lua script (Redis), one
transaction (SQLite) or one locked section (memory).

Rules every implementation follows (the contract suite in ``tests/runtime/backends``
checks them against each one):

* Terminal states (SUCCESS, FAILURE, REVOKED) are write-once: the first writer wins and
  later writes report ``new=False``. A non-terminal state (RECEIVED, STARTED, RETRY)
  overwrites a missing or non-terminal record and never a terminal one.
* Chord parts are keyed by member index, so recording the same part twice counts once.
  Exactly one call ever sees the chord complete, except a retry by the same claimant
  (the task id that completed it), which sees it again so a crash between "complete"
  and "body published" cannot lose the body.
* A store that names a ``tracked`` workflow and writes a terminal record for the first
  time adds one to that workflow's count of the state, in the same atomic step (so a
  duplicate or a retried call never counts twice).
* Everything expires after ``expires`` seconds (None: never) so nothing piles up.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple, TypeVar

import attrs

from flowq import states
from flowq.exceptions import TimeoutError
from flowq.runtime import revoked_stamps
from flowq.runtime.revoked_stamps import RevokedStamps

T = TypeVar("T")


class Record(NamedTuple):
    """A stored result: its state and the encoded payload."""

    state: str
    payload: bytes


#: How a revocation that also terminates is kept among the revoked ids (``revoke``'s own
#: entries): ``terminate:<signal number>:<id>``.
TERMINATE_MARK = "terminate:"


@attrs.frozen(slots=True)
class Revocations:
    """Revoked ids (task ids or workflow root ids), and the signal that kills a process
    running each of those revoked with ``terminate``; the same for revoked stamps."""

    ids: frozenset[str]
    terminate: dict[str, int]
    stamps: RevokedStamps = attrs.field(factory=RevokedStamps)
    terminate_stamps: dict[int, RevokedStamps] = attrs.field(factory=dict)


@attrs.frozen(slots=True)
class ChordPart:
    """One member's completion, recorded together with the member's own result.

    ``value`` is the member's encoded result (None when the member failed);
    ``claimant`` is the member's task id.
    """

    join_id: str
    index: int
    size: int
    value: bytes | None
    claimant: str

    def __attrs_post_init__(self) -> None:
        # An index outside the chord would be counted but never returned with the values.
        if not 0 <= self.index < self.size:
            raise ValueError(f"chord part index {self.index} outside chord {self.join_id!r} "
                             f"of size {self.size}")


@attrs.frozen(slots=True)
class StoreOutcome:
    """What :meth:`ResultBackend.store` did.

    ``new``: this call wrote the record (first terminal writer).
    ``joined``: the chord's member values in index order, given only to the call that
    completed the chord (or a retry by the same claimant); None otherwise.
    ``first_failure``: this call recorded the chord's first failed member.
    ``lost``: the chord's state was missing (expired or never created): ChordStateLost.
    """

    new: bool
    joined: tuple[bytes, ...] | None = None
    first_failure: bool = False
    lost: bool = False


@attrs.frozen(slots=True)
class Progress:
    """A tracked workflow's outcomes so far: terminal state -> nodes recorded in it, and
    when the last one was recorded (unix time; None before the first)."""

    counts: Mapping[str, int] = attrs.field(factory=dict)
    updated: float | None = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())


@attrs.frozen(slots=True)
class TrackedWorkflow:
    """An entry of the index of recent workflows: its root id, when it was sent, the
    summary its sender stored and its progress."""

    root_id: str
    created: float
    summary: bytes
    progress: Progress


class DelayedMessage(NamedTuple):
    """A message waiting for its due time in the backend's delay index."""

    key: str
    payload: bytes


class ResultBackend(abc.ABC):
    """Interface of a result backend. Implementations: memory, redis, sqlite."""

    #: URL with the password masked; safe to print.
    url: str

    # -- results ------------------------------------------------------------------------

    @abc.abstractmethod
    def store(self, task_id: str, state: str, payload: bytes, *,
              part: ChordPart | None = None, expires: float | None = None,
              tracked: str | None = None) -> StoreOutcome:
        """Write ``task_id``'s record and, in the same atomic step, its chord part.

        Terminal states also wake every :meth:`wait` on ``task_id``; a first terminal
        record counts in the progress of the workflow ``tracked`` (a root id), if given.
        """

    @abc.abstractmethod
    def store_many(self, records: Sequence[tuple[str, str, bytes]],
                   expires: float | None = None, tracked: str | None = None) -> None:
        """Write many terminal records at once (pipelined); existing ones are kept. The
        new ones count in the progress of ``tracked``, as with :meth:`store`."""

    @abc.abstractmethod
    def get_many(self, task_ids: Sequence[str]) -> list[Record | None]:
        """Return the records of ``task_ids`` in order; None where there is none."""

    def get(self, task_id: str) -> Record | None:
        return self.get_many([task_id])[0]

    @abc.abstractmethod
    def wait(self, task_ids: Sequence[str], timeout: float | None) -> list[Record]:
        """Block until every id has a terminal record and return them in order.

        Wakes on arrival (no sleep-poll loop where the store can notify). Raises
        :class:`flowq.exceptions.TimeoutError` after ``timeout`` seconds.
        """

    @abc.abstractmethod
    def forget(self, task_ids: Iterable[str]) -> None:
        """Delete the records of ``task_ids``."""

    # -- chords -------------------------------------------------------------------------

    @abc.abstractmethod
    def chord_init(self, joins: Sequence[tuple[str, int]], expires: float | None = None) -> None:
        """Create the state of each chord ``(join_id, size)``; existing ones are kept.

        A part recorded for a chord that was never created (or expired) reports
        ``lost=True`` instead of silently starting a new count.
        """

    @abc.abstractmethod
    def chord_grow(self, join_id: str, claim: str, count: int,
                   expires: float | None = None) -> int | None:
        """Add ``count`` parts to the chord ``join_id`` and return its size before (the
        first new part's index); None if the chord is gone (expired), complete or failed.

        Once per ``claim``: a retry, or a redelivered task growing the chord with the
        same claim, gets the same answer and grows nothing. Parts added this way count
        like the first ones; the chord completes when every part is recorded.
        """

    @abc.abstractmethod
    def chord_values(self, join_id: str) -> dict[int, bytes | None]:
        """The parts recorded so far (index -> value, None for a failed part)."""

    @abc.abstractmethod
    def chord_reset(self, joins: Sequence[tuple[str, int, Mapping[int, bytes]]],
                    expires: float | None = None) -> None:
        """Replace the state of each chord ``(join_id, size, parts)`` by exactly ``parts``
        (index -> value), none fired and none failed: what ``resume`` keeps of a chord
        whose other members run again."""

    # -- resume: letting tasks run again ----------------------------------------------

    @abc.abstractmethod
    def reset(self, counted: Sequence[str], *, tracked: str | None = None,
              uncounted: Sequence[str] = (), flags: Sequence[str] = (),
              counters: Sequence[str] = ()) -> None:
        """Delete records so that their tasks can run again (``resume``): those of
        ``counted`` (their terminal states stop counting in the progress of the workflow
        ``tracked``, if given, which counts as changed now), those of ``uncounted`` (fanout
        items and errbacks, never counted), and the flags and counters named.

        Each counted record is deleted and uncounted in one atomic step, so a reset that
        is repeated, or resumed after a crash, never uncounts a record twice.
        """

    # -- tracked workflows: the index of recent ones, their progress ----------------------

    @abc.abstractmethod
    def track_workflow(self, root_id: str, created: float, summary: bytes, detail: bytes,
                       expires: float | None, keep: int) -> None:
        """Index the workflow ``root_id``, sent at ``created`` (unix time), among the recent
        ones, with its ``summary`` (read with every listing) and ``detail`` (read for it
        alone), in one atomic step. The index keeps the ``keep`` newest entries and none
        older than ``expires`` seconds, so it costs O(1) per workflow sent."""

    @abc.abstractmethod
    def recent_workflows(self, limit: int) -> list[TrackedWorkflow]:
        """The ``limit`` most recently sent workflows still indexed, newest first."""

    @abc.abstractmethod
    def tracked_workflows(self, root_ids: Sequence[str]) -> list[TrackedWorkflow | None]:
        """The index entries of ``root_ids`` in order; None where there is none."""

    @abc.abstractmethod
    def workflow_detail(self, root_id: str) -> bytes | None:
        """The ``detail`` stored with :meth:`track_workflow`, or None."""

    # -- flags (once-only markers) ------------------------------------------------------

    @abc.abstractmethod
    def set_flag(self, key: str, expires: float | None = None) -> bool:
        """Set ``key``; return True only for the call that created it (SET NX)."""

    @abc.abstractmethod
    def has_flag(self, key: str) -> bool:
        """Whether ``key`` is set."""

    @abc.abstractmethod
    def incr(self, key: str, expires: float | None = None) -> int:
        """Add one to the counter ``key`` (created at 0) and return the new value.

        Counts deliveries of a message, durably across worker restarts. A retry after a
        lost reply may count twice; counters are for bounds, not for exactly-once.
        """

    # -- blobs: workflows stored by content hash, saved groups, beat state ---------------

    @abc.abstractmethod
    def put_blob(self, key: str, data: bytes, expires: float | None = None) -> None:
        """Store ``data`` under ``key`` (overwrites)."""

    def put_blobs(self, items: Sequence[tuple[str, bytes]], expires: float | None = None) -> None:
        """Store many blobs at once (overwrites), e.g. one small index entry per node of a
        workflow; implementations batch the writes."""
        for key, data in items:
            self.put_blob(key, data, expires=expires)

    @abc.abstractmethod
    def get_blob(self, key: str) -> bytes | None:
        """Return the blob under ``key``, or None."""

    @abc.abstractmethod
    def touch_blob(self, key: str, expires: float | None) -> None:
        """Let the blob under ``key`` (if any) live at least ``expires`` more seconds
        (None: forever); never shortens its life."""

    @abc.abstractmethod
    def delete_blob(self, key: str) -> None:
        """Delete the blob under ``key`` if present."""

    # -- revocations --------------------------------------------------------------------

    @abc.abstractmethod
    def revoke(self, ids: Iterable[str], expires: float | None = None) -> None:
        """Remember that ``ids`` (task ids or workflow root ids) are revoked."""

    def revoke_and_terminate(self, ids: Iterable[str], signum: int,
                             expires: float | None = None) -> None:
        """Revoke ``ids`` and remember to kill, with ``signum``, any process running
        them, so a worker that missed the broadcast still does it."""
        ids = list(ids)
        self.revoke([*ids, *(f"{TERMINATE_MARK}{signum}:{i}" for i in ids)], expires)

    def revocations(self) -> Revocations:
        """What :meth:`revoked` holds, the terminating entries and stamps read apart."""
        ids, terminate, stamps = set(), {}, []
        by_signal: dict[int, list[str]] = {}
        for entry in self.revoked():
            if entry.startswith(TERMINATE_MARK):
                signum, _, task_id = entry.removeprefix(TERMINATE_MARK).partition(":")
                if not signum.isdigit():
                    continue
                if task_id.startswith(revoked_stamps.MARK):
                    by_signal.setdefault(int(signum), []).append(task_id)
                else:
                    terminate[task_id] = int(signum)
            elif entry.startswith(revoked_stamps.MARK):
                stamps.append(entry)
            else:
                ids.add(entry)
        return Revocations(frozenset(ids), terminate, RevokedStamps.parse(stamps),
                           {signum: RevokedStamps.parse(found)
                            for signum, found in by_signal.items()})

    @abc.abstractmethod
    def revoked(self) -> set[str]:
        """Every entry currently revoked (not yet expired), terminating ones included
        (see :meth:`revocations`)."""

    # -- delay index: messages with a future eta ----------------------------------------

    @abc.abstractmethod
    def delay_add(self, items: Sequence[tuple[float, str, bytes]]) -> None:
        """Index ``(due_timestamp, key, payload)`` items until they are due."""

    @abc.abstractmethod
    def delay_due(self, now: float, lease: float, limit: int) -> list[DelayedMessage]:
        """Claim up to ``limit`` items due at ``now``.

        Claimed items are not returned again for ``lease`` seconds; the caller publishes
        them and then calls :meth:`delay_done`. A caller that dies before that leaves them
        to be claimed again after the lease (at-least-once, never lost).
        """

    @abc.abstractmethod
    def delay_done(self, keys: Iterable[str]) -> None:
        """Drop items from the delay index (published, or revoked)."""

    @abc.abstractmethod
    def delay_expedite(self, task_ids: Iterable[str], now: float) -> int:
        """Make the delayed messages of ``task_ids`` (keys ``<id>:<retries>``) due at
        ``now``, so a revoked one is taken, and marked revoked, at once; how many."""

    @abc.abstractmethod
    def delay_pending(self, task_ids: Iterable[str]) -> set[str]:
        """Which of ``task_ids`` have a message in the delay index."""

    @abc.abstractmethod
    def delay_count(self) -> int:
        """How many items wait in the delay index."""

    @abc.abstractmethod
    def delay_peek(self, limit: int) -> list[tuple[float, bytes]]:
        """The ``limit`` items due soonest, as ``(due_timestamp, payload)``, untouched."""

    @abc.abstractmethod
    def delay_horizon(self) -> float | None:
        """The latest due timestamp in the delay index (None when it is empty)."""

    # -- leases (single beat) -----------------------------------------------------------

    @abc.abstractmethod
    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease ``key`` for ``owner``; False while another owner holds it."""

    @abc.abstractmethod
    def release_lease(self, key: str, owner: str) -> None:
        """Give up the lease if ``owner`` holds it."""

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 - optional for backends without connections
        """Release connections."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url}>"


def is_terminal(state: str) -> bool:
    return state in states.READY_STATES


# -- helpers the implementations share ------------------------------------------------------


def chord_verdict(part: ChordPart, *, inserted: bool, size: int, recorded: int,
                  fired: str | None, failed: bool) -> tuple[bool, bool]:
    """Apply the chord rules to ``part``; return ``(first_failure, joins)``.

    ``inserted``: this call recorded the part (the first write for its index wins, so a
    failed redelivery of a member that succeeded does not fail the chord); ``recorded``:
    parts recorded now; ``fired`` and ``failed``: the chord's markers before this call.
    The caller marks the chord failed on ``first_failure`` and sets ``fired`` to the
    claimant on ``joins``. ``lua/store.lua`` applies the same rules inside Redis.
    """
    first_failure = inserted and part.value is None and not failed
    if failed or first_failure or recorded < size:
        return first_failure, False
    return False, fired is None or fired == part.claimant


class PendingWait:
    """The bookkeeping of one :meth:`ResultBackend.wait`: what is missing, what was found.

    Repeated ids are allowed; records are handed back in the order the ids were given.
    """

    def __init__(self, task_ids: Sequence[str], timeout: float | None):
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._records: list[Record | None] = [None] * len(task_ids)
        self._slots: dict[str, list[int]] = {}
        for slot, task_id in enumerate(task_ids):
            self._slots.setdefault(task_id, []).append(slot)

    @property
    def pending(self) -> list[str]:
        """The ids still without a terminal record."""
        return list(self._slots)

    @property
    def done(self) -> bool:
        return not self._slots

    def offer(self, task_ids: Sequence[str], records: Sequence[Record | None]) -> None:
        """Take the terminal ones of ``records`` (fetched for ``task_ids``)."""
        for task_id, record in zip(task_ids, records, strict=True):
            if record is not None and is_terminal(record.state) and task_id in self._slots:
                for slot in self._slots.pop(task_id):
                    self._records[slot] = record

    def records(self) -> list[Record]:
        assert self.done, "records() before every id arrived"
        return self._records  # type: ignore[return-value]  # no None left once done

    def time_left(self) -> float | None:
        """Seconds until the timeout (None: no timeout); raises TimeoutError once it passed."""
        if self._deadline is None:
            return None
        left = self._deadline - time.monotonic()
        if left <= 0:
            missing = sum(len(slots) for slots in self._slots.values())
            sample = ", ".join(list(self._slots)[:3])
            raise TimeoutError(
                f"{missing} of {len(self._records)} results still pending after waiting "
                f"{self._timeout}s (e.g. {sample}); raise the timeout or check that a worker "
                f"consumes their queue")
        return left


def chunked(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Slices of ``items`` of at most ``size``: keeps commands and SQL statements bounded."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


__all__ = ["ChordPart", "DelayedMessage", "PendingWait", "Progress", "Record", "ResultBackend",
           "StoreOutcome", "TrackedWorkflow", "chord_verdict", "chunked", "is_terminal"]
