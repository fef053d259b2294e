"""In-process result backend for eager runs and pure unit tests.

Every operation runs under one lock, which makes each one atomic; a condition on that
lock wakes :meth:`MemoryBackend.wait`. Entries expire lazily on the monotonic clock.
Nothing is shared with other processes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, TypeVar, cast

import attrs

from flowq.runtime.backends.base import (
    ChordPart,
    DelayedMessage,
    PendingWait,
    Progress,
    Record,
    ResultBackend,
    StoreOutcome,
    TrackedWorkflow,
    chord_verdict,
    is_terminal,
)

V = TypeVar("V")

#: Sets between two sweeps of expired entries nobody reads again.
_SWEEP_EVERY = 1000


class _Expiring(Generic[V]):
    """A dict whose entries vanish ``expires`` seconds after they were set."""

    def __init__(self) -> None:
        self._items: dict[str, tuple[V, float | None]] = {}
        self._sets = 0

    def get(self, key: str) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if _expired(item[1]):
            del self._items[key]
            return None
        return item[0]

    def set(self, key: str, value: V, expires: float | None) -> None:
        self._items[key] = (value, None if expires is None else time.monotonic() + expires)
        self._sets += 1
        if self._sets % _SWEEP_EVERY == 0:
            self._sweep()

    def extend(self, key: str, expires: float | None) -> None:
        """Push the expiry of ``key`` (if present) to at least ``expires`` from now."""
        item = self._items.get(key)
        if item is None or item[1] is None:
            return
        deadline = None if expires is None else time.monotonic() + expires
        if deadline is None or deadline > item[1]:
            self._items[key] = (item[0], deadline)

    def replace(self, key: str, value: V) -> None:
        """Change the value of ``key`` (if present), keeping its expiry."""
        item = self._items.get(key)
        if item is not None:
            self._items[key] = (value, item[1])

    def pop(self, key: str) -> None:
        self._items.pop(key, None)

    def _sweep(self) -> None:
        """Drop expired entries that nobody reads again."""
        for key in [key for key, (_, deadline) in self._items.items() if _expired(deadline)]:
            del self._items[key]


def _expired(deadline: float | None) -> bool:
    return deadline is not None and deadline <= time.monotonic()


@attrs.define
class _Chord:
    size: int
    parts: dict[int, bytes | None] = attrs.Factory(dict)
    fired: str | None = None
    failed: bool = False
    grown: dict[str, int] = attrs.Factory(dict)  # claim -> size before it grew


class MemoryBackend(ResultBackend):
    """Results, chords, flags, blobs, revocations, delay index and leases in dicts."""

    def __init__(self, url: str = "memory://"):
        self.url = url
        self._cond = threading.Condition()
        self._results: _Expiring[Record] = _Expiring()
        self._chords: _Expiring[_Chord] = _Expiring()
        self._flags: _Expiring[bool] = _Expiring()
        self._counters: _Expiring[int] = _Expiring()
        self._blobs: _Expiring[bytes] = _Expiring()
        self._revoked: dict[str, float] = {}  # id -> monotonic deadline (inf: never)
        self._leases: _Expiring[str] = _Expiring()
        self._delayed: dict[str, tuple[float, bytes]] = {}
        self._tracked: _Expiring[tuple[float, bytes, bytes]] = _Expiring()
        self._progress: _Expiring[Progress] = _Expiring()
        self._recent: dict[str, float] = {}  # root id -> time sent

    # -- results ----------------------------------------------------------------------------

    def store(self, task_id: str, state: str, payload: bytes, *,
              part: ChordPart | None = None, expires: float | None = None,
              tracked: str | None = None) -> StoreOutcome:
        with self._cond:
            new = self._write(task_id, Record(state, payload), expires, keep_existing=False)
            if new:
                self._count(tracked, [state], expires)
            if part is None:
                return StoreOutcome(new)
            return self._record_part(part, expires, new)

    def store_many(self, records: Sequence[tuple[str, str, bytes]],
                   expires: float | None = None, tracked: str | None = None) -> None:
        with self._cond:
            written = [state for task_id, state, payload in records
                       if self._write(task_id, Record(state, payload), expires,
                                      keep_existing=True)]
            self._count(tracked, written, expires)

    def _count(self, tracked: str | None, written: list[str], expires: float | None) -> None:
        """Add the terminal ``written`` states to the progress of ``tracked``."""
        terminal = [state for state in written if is_terminal(state)]
        if tracked is None or not terminal:
            return
        counts = dict((self._progress.get(tracked) or Progress()).counts)
        for state in terminal:
            counts[state] = counts.get(state, 0) + 1
        self._progress.set(tracked, Progress(counts, time.time()), expires)

    def _write(self, task_id: str, record: Record, expires: float | None, *,
               keep_existing: bool) -> bool:
        """Write unless a terminal record (or, with ``keep_existing``, any record) is there."""
        old = self._results.get(task_id)
        if old is not None and (keep_existing or is_terminal(old.state)):
            return False
        self._results.set(task_id, record, expires)
        if is_terminal(record.state):
            self._cond.notify_all()
        return True

    def get_many(self, task_ids: Sequence[str]) -> list[Record | None]:
        with self._cond:
            return [self._results.get(task_id) for task_id in task_ids]

    def wait(self, task_ids: Sequence[str], timeout: float | None) -> list[Record]:
        waiting = PendingWait(task_ids, timeout)
        with self._cond:
            while True:
                pending = waiting.pending
                waiting.offer(pending, [self._results.get(task_id) for task_id in pending])
                if waiting.done:
                    return waiting.records()
                self._cond.wait(waiting.time_left())

    def forget(self, task_ids: Iterable[str]) -> None:
        with self._cond:
            for task_id in task_ids:
                self._results.pop(task_id)

    # -- chords -----------------------------------------------------------------------------

    def chord_init(self, joins: Sequence[tuple[str, int]], expires: float | None = None) -> None:
        with self._cond:
            for join_id, size in joins:
                if self._chords.get(join_id) is None:
                    self._chords.set(join_id, _Chord(size), expires)

    def _record_part(self, part: ChordPart, expires: float | None, new: bool) -> StoreOutcome:
        chord = self._chords.get(part.join_id)
        if chord is None:
            return StoreOutcome(new, lost=True)
        inserted = part.index not in chord.parts
        chord.parts.setdefault(part.index, part.value)
        first_failure, joins = chord_verdict(part, inserted=inserted, size=chord.size,
                                             recorded=len(chord.parts), fired=chord.fired,
                                             failed=chord.failed)
        chord.failed = chord.failed or first_failure
        if expires is not None:
            self._chords.set(part.join_id, chord, expires)
        if not joins:
            return StoreOutcome(new, first_failure=first_failure)
        chord.fired = part.claimant
        values = tuple(chord.parts[index] for index in range(chord.size))
        return StoreOutcome(new, joined=cast("tuple[bytes, ...]", values))  # none failed

    def chord_grow(self, join_id: str, claim: str, count: int,
                   expires: float | None = None) -> int | None:
        with self._cond:
            chord = self._chords.get(join_id)
            if chord is None:
                return None
            if claim in chord.grown:
                return chord.grown[claim]
            if chord.fired is not None or chord.failed:
                return None
            before = chord.grown[claim] = chord.size
            chord.size += count
            if expires is not None:
                self._chords.set(join_id, chord, expires)
            return before

    def chord_values(self, join_id: str) -> dict[int, bytes | None]:
        with self._cond:
            chord = self._chords.get(join_id)
            return {} if chord is None else dict(chord.parts)

    def chord_reset(self, joins: Sequence[tuple[str, int, Mapping[int, bytes]]],
                    expires: float | None = None) -> None:
        with self._cond:
            for join_id, size, parts in joins:
                self._chords.set(join_id, _Chord(size, dict(parts)), expires)

    # -- resume -----------------------------------------------------------------------------

    def reset(self, counted: Sequence[str], *, tracked: str | None = None,
              uncounted: Sequence[str] = (), flags: Sequence[str] = (),
              counters: Sequence[str] = ()) -> None:
        with self._cond:
            gone = [record.state for record in map(self._results.get, dict.fromkeys(counted))
                    if record is not None and is_terminal(record.state)]
            for task_id in (*counted, *uncounted):
                self._results.pop(task_id)
            for key in flags:
                self._flags.pop(key)
            for key in counters:
                self._counters.pop(key)
            progress = None if tracked is None else self._progress.get(tracked)
            if tracked is not None and progress is not None:
                counts = dict(progress.counts)
                for state in gone:
                    counts[state] = counts.get(state, 0) - 1
                self._progress.replace(tracked, Progress(
                    {state: n for state, n in counts.items() if n > 0}, time.time()))

    # -- tracked workflows ------------------------------------------------------------------

    def track_workflow(self, root_id: str, created: float, summary: bytes, detail: bytes,
                       expires: float | None, keep: int) -> None:
        with self._cond:
            self._tracked.set(root_id, (created, summary, detail), expires)
            self._recent[root_id] = created
            if expires is not None:
                oldest = time.time() - expires
                self._recent = {root: sent for root, sent in self._recent.items()
                                if sent > oldest}
            while len(self._recent) > keep:
                del self._recent[min(self._recent, key=self._recent.__getitem__)]

    def recent_workflows(self, limit: int) -> list[TrackedWorkflow]:
        with self._cond:
            newest = sorted(self._recent, key=self._recent.__getitem__, reverse=True)
        return [entry for entry in self.tracked_workflows(newest[:limit]) if entry is not None]

    def tracked_workflows(self, root_ids: Sequence[str]) -> list[TrackedWorkflow | None]:
        with self._cond:
            return [self._entry(root_id) for root_id in root_ids]

    def _entry(self, root_id: str) -> TrackedWorkflow | None:
        stored = self._tracked.get(root_id)
        if stored is None:
            return None
        created, summary, _ = stored
        return TrackedWorkflow(root_id, created, summary,
                               self._progress.get(root_id) or Progress())

    def workflow_detail(self, root_id: str) -> bytes | None:
        with self._cond:
            stored = self._tracked.get(root_id)
            return None if stored is None else stored[2]

    # -- flags and blobs --------------------------------------------------------------------

    def set_flag(self, key: str, expires: float | None = None) -> bool:
        with self._cond:
            if self._flags.get(key):
                return False
            self._flags.set(key, True, expires)
            return True

    def has_flag(self, key: str) -> bool:
        with self._cond:
            return bool(self._flags.get(key))

    def incr(self, key: str, expires: float | None = None) -> int:
        with self._cond:
            value = (self._counters.get(key) or 0) + 1
            self._counters.set(key, value, expires)
            return value

    def put_blob(self, key: str, data: bytes, expires: float | None = None) -> None:
        with self._cond:
            self._blobs.set(key, data, expires)

    def get_blob(self, key: str) -> bytes | None:
        with self._cond:
            return self._blobs.get(key)

    def touch_blob(self, key: str, expires: float | None) -> None:
        with self._cond:
            self._blobs.extend(key, expires)

    def delete_blob(self, key: str) -> None:
        with self._cond:
            self._blobs.pop(key)

    # -- revocations ------------------------------------------------------------------------

    def revoke(self, ids: Iterable[str], expires: float | None = None) -> None:
        deadline = math.inf if expires is None else time.monotonic() + expires
        with self._cond:
            for revoked_id in ids:
                # A revocation never shortens: keep the later expiry, like ZADD GT in Redis.
                self._revoked[revoked_id] = max(deadline, self._revoked.get(revoked_id, 0.0))

    def revoked(self) -> set[str]:
        now = time.monotonic()
        with self._cond:
            self._revoked = {key: end for key, end in self._revoked.items() if end > now}
            return set(self._revoked)

    # -- delay index ------------------------------------------------------------------------

    def delay_add(self, items: Sequence[tuple[float, str, bytes]]) -> None:
        with self._cond:
            for due, key, payload in items:
                self._delayed[key] = (due, payload)

    def delay_due(self, now: float, lease: float, limit: int) -> list[DelayedMessage]:
        with self._cond:
            due = sorted((item[0], key) for key, item in self._delayed.items() if item[0] <= now)
            claimed = []
            for _, key in due[:limit]:
                payload = self._delayed[key][1]
                self._delayed[key] = (now + lease, payload)
                claimed.append(DelayedMessage(key, payload))
            return claimed

    def delay_done(self, keys: Iterable[str]) -> None:
        with self._cond:
            for key in keys:
                self._delayed.pop(key, None)

    def delay_expedite(self, task_ids: Iterable[str], now: float) -> int:
        wanted = set(task_ids)
        with self._cond:
            keys = [key for key in self._delayed if key.rpartition(":")[0] in wanted]
            for key in keys:
                self._delayed[key] = (now, self._delayed[key][1])
            return len(keys)

    def delay_pending(self, task_ids: Iterable[str]) -> set[str]:
        wanted = set(task_ids)
        with self._cond:
            return {key.rpartition(":")[0] for key in self._delayed} & wanted

    def delay_count(self) -> int:
        with self._cond:
            return len(self._delayed)

    def delay_peek(self, limit: int) -> list[tuple[float, bytes]]:
        with self._cond:
            return sorted(self._delayed.values())[:limit]

    def delay_horizon(self) -> float | None:
        with self._cond:
            return max((due for due, _ in self._delayed.values()), default=None)

    # -- leases -----------------------------------------------------------------------------

    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        with self._cond:
            if self._leases.get(key) not in (None, owner):
                return False
            self._leases.set(key, owner, ttl)
            return True

    def release_lease(self, key: str, owner: str) -> None:
        with self._cond:
            if self._leases.get(key) == owner:
                self._leases.pop(key)
