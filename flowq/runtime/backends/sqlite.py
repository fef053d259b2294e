"""The embedded result backend: one SQLite file, shared by every process on the machine.

WAL mode lets readers run beside the one writer; each atomic operation is one
``BEGIN IMMEDIATE`` transaction, which takes the write lock up front so two processes
counting the same chord queue up instead of deadlocking. SQLite cannot notify, so
:meth:`SqliteBackend.wait` polls with a short backoff. Expired rows are ignored on read
and deleted now and then.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from flowq import states
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
    chunked,
    is_terminal,
)

#: Ids per ``IN (...)`` query, under SQLite's limit on bound parameters.
_BATCH = 500
#: Seconds between two deletions of expired rows (per process).
_PRUNE_EVERY = 60.0
#: wait() polls after 1 ms, doubling up to 25 ms.
_POLL_FIRST, _POLL_MAX = 0.001, 0.025

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY, state TEXT NOT NULL, payload BLOB NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS chords (
    id TEXT PRIMARY KEY, size INTEGER NOT NULL, recorded INTEGER NOT NULL DEFAULT 0,
    fired TEXT, failed INTEGER NOT NULL DEFAULT 0, expires_at REAL);
CREATE TABLE IF NOT EXISTS chord_parts (
    chord_id TEXT NOT NULL, idx INTEGER NOT NULL, value BLOB,  -- NULL: the member failed
    PRIMARY KEY (chord_id, idx)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chord_grown (  -- chord_grow(): the size before each claim grew it
    chord_id TEXT NOT NULL, claim TEXT NOT NULL, size_before INTEGER NOT NULL,
    PRIMARY KEY (chord_id, claim)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS flags (key TEXT PRIMARY KEY, expires_at REAL);
CREATE TABLE IF NOT EXISTS counters (key TEXT PRIMARY KEY, value INTEGER NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS blobs (key TEXT PRIMARY KEY, data BLOB NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS revoked (id TEXT PRIMARY KEY, expires_at REAL);
CREATE TABLE IF NOT EXISTS delayed (key TEXT PRIMARY KEY, due REAL NOT NULL, payload BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS delayed_by_due ON delayed (due);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS workflows (
    seq INTEGER PRIMARY KEY, root_id TEXT NOT NULL UNIQUE, created REAL NOT NULL,
    summary BLOB NOT NULL, detail BLOB NOT NULL, expires_at REAL);
CREATE TABLE IF NOT EXISTS progress (
    root_id TEXT NOT NULL, state TEXT NOT NULL, n INTEGER NOT NULL, updated REAL NOT NULL,
    expires_at REAL, PRIMARY KEY (root_id, state)) WITHOUT ROWID;
"""

#: A row is alive until its ``expires_at`` (NULL: forever); ``:now`` is time.time().
_ALIVE = "(expires_at IS NULL OR expires_at > :now)"
_TERMINAL = ", ".join(f"'{state}'" for state in sorted(states.READY_STATES))
#: Writes a record over a missing or expired one; store() widens it to unready ones.
_PUT_RESULT = """
INSERT INTO results (id, state, payload, expires_at) VALUES (:id, :state, :payload, :until)
ON CONFLICT (id) DO UPDATE SET
    state = excluded.state, payload = excluded.payload, expires_at = excluded.expires_at
WHERE results.expires_at <= :now"""
_EXPIRED_TABLES = ("results", "chords", "flags", "blobs", "revoked", "leases", "workflows",
                   "progress")
#: One more node of a tracked workflow recorded in ``:state`` (an expired count restarts).
_COUNT = """
INSERT INTO progress VALUES (:root, :state, :n, :now, :until)
ON CONFLICT (root_id, state) DO UPDATE SET
    n = CASE WHEN progress.expires_at <= :now THEN 0 ELSE progress.n END + excluded.n,
    updated = excluded.updated, expires_at = excluded.expires_at"""


class SqliteBackend(ResultBackend):
    """Result backend in the SQLite file at ``path`` (its directory is created).

    ``busy_timeout``: seconds a write waits for another process's transaction to end.
    """

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0):
        self.path = os.path.abspath(path)
        self.url = f"sqlite:///{self.path}"
        self._busy_timeout = busy_timeout
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self._pid = os.getpid()
        self._connections: dict[int, sqlite3.Connection] = {}
        self._inherited: list[dict[int, sqlite3.Connection]] = []
        self._next_prune = 0.0
        db = self._conn()
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(_SCHEMA)

    # -- connections and transactions -------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection in this process.

        A forked child opens its own and keeps the parent's unused and unclosed: closing
        an inherited handle would drop the child's own POSIX locks on the file.
        """
        if self._pid != os.getpid():
            self._inherited.append(self._connections)
            self._connections, self._pid = {}, os.getpid()
        thread = threading.get_ident()
        db = self._connections.get(thread)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                 check_same_thread=False)
            db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes
            self._connections[thread] = db
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its first statement."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            if time.monotonic() >= self._next_prune:
                self._prune(db)
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _prune(self, db: sqlite3.Connection) -> None:
        now = {"now": time.time()}
        for table in ("chord_parts", "chord_grown"):
            db.execute(f"DELETE FROM {table} WHERE chord_id IN "
                       f"(SELECT id FROM chords WHERE expires_at <= :now)", now)
        for table in _EXPIRED_TABLES:
            db.execute(f"DELETE FROM {table} WHERE expires_at <= :now", now)
        self._next_prune = time.monotonic() + _PRUNE_EVERY

    def _read(self, sql: str, **params: Any) -> list[Any]:
        return self._conn().execute(sql, {"now": time.time(), **params}).fetchall()

    # -- results ----------------------------------------------------------------------------

    def store(self, task_id: str, state: str, payload: bytes, *,
              part: ChordPart | None = None, expires: float | None = None,
              tracked: str | None = None) -> StoreOutcome:
        now = time.time()
        row = {"id": task_id, "state": state, "payload": payload, "until": _until(now, expires),
               "now": now}
        with self._transaction() as db:
            new = db.execute(f"{_PUT_RESULT} OR results.state NOT IN ({_TERMINAL})",
                             row).rowcount == 1
            if new:
                _count(db, tracked, state, 1, now, expires)
            if part is None:
                return StoreOutcome(new)
            return self._record_part(db, part, now, expires, new)

    def store_many(self, records: Sequence[tuple[str, str, bytes]],
                   expires: float | None = None, tracked: str | None = None) -> None:
        now = time.time()
        until = _until(now, expires)
        by_state: dict[str, list[dict[str, Any]]] = {}
        for task_id, state, payload in records:
            by_state.setdefault(state, []).append(
                {"id": task_id, "state": state, "payload": payload, "until": until, "now": now})
        with self._transaction() as db:
            for state, rows in by_state.items():  # one statement per state: its rowcount
                written = db.executemany(_PUT_RESULT, rows).rowcount
                _count(db, tracked, state, written, now, expires)

    def get_many(self, task_ids: Sequence[str]) -> list[Record | None]:
        found: dict[str, Record] = {}
        db = self._conn()
        for batch in chunked(task_ids, _BATCH):
            rows = db.execute(f"SELECT id, state, payload FROM results WHERE id IN "
                              f"({', '.join('?' * len(batch))}) AND "
                              f"(expires_at IS NULL OR expires_at > ?)", (*batch, time.time()))
            found.update((task_id, Record(state, payload)) for task_id, state, payload in rows)
        return [found.get(task_id) for task_id in task_ids]

    def wait(self, task_ids: Sequence[str], timeout: float | None) -> list[Record]:
        waiting = PendingWait(task_ids, timeout)
        delay = _POLL_FIRST
        while True:
            pending = waiting.pending
            waiting.offer(pending, self.get_many(pending))
            if waiting.done:
                return waiting.records()
            left = waiting.time_left()
            time.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, _POLL_MAX)

    def forget(self, task_ids: Iterable[str]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM results WHERE id = ?", [(i,) for i in task_ids])

    # -- chords -----------------------------------------------------------------------------

    def chord_init(self, joins: Sequence[tuple[str, int]], expires: float | None = None) -> None:
        now = time.time()
        with self._transaction() as db:
            for join_id, size in joins:
                _drop_expired_chord(db, join_id, now)
                db.execute("INSERT OR IGNORE INTO chords (id, size, expires_at) "
                           "VALUES (?, ?, ?)", (join_id, size, _until(now, expires)))

    def _record_part(self, db: sqlite3.Connection, part: ChordPart, now: float,
                     expires: float | None, new: bool) -> StoreOutcome:
        chord = db.execute(f"SELECT size, recorded, fired, failed FROM chords "
                           f"WHERE id = :id AND {_ALIVE}", {"id": part.join_id, "now": now}
                           ).fetchone()
        if chord is None:
            return StoreOutcome(new, lost=True)
        size, recorded, fired, failed = chord
        inserted = db.execute("INSERT OR IGNORE INTO chord_parts VALUES (?, ?, ?)",
                              (part.join_id, part.index, part.value)).rowcount == 1
        first_failure, joins = chord_verdict(part, inserted=inserted, size=size,
                                             recorded=recorded + inserted, fired=fired,
                                             failed=bool(failed))
        db.execute("UPDATE chords SET recorded = recorded + :inserted, failed = failed OR :failed,"
                   " fired = :fired, expires_at = coalesce(:until, expires_at) WHERE id = :id",
                   {"inserted": inserted, "failed": first_failure, "id": part.join_id,
                    "fired": part.claimant if joins else fired, "until": _until(now, expires)})
        if not joins:
            return StoreOutcome(new, first_failure=first_failure)
        values = db.execute("SELECT value FROM chord_parts WHERE chord_id = ? ORDER BY idx",
                            (part.join_id,))
        return StoreOutcome(new, joined=tuple(value for (value,) in values))

    def chord_grow(self, join_id: str, claim: str, count: int,
                   expires: float | None = None) -> int | None:
        now = time.time()
        with self._transaction() as db:
            chord = db.execute(f"SELECT size, fired, failed FROM chords WHERE id = :id AND "
                               f"{_ALIVE}", {"id": join_id, "now": now}).fetchone()
            if chord is None:
                return None
            seen = db.execute("SELECT size_before FROM chord_grown WHERE chord_id = ? AND "
                              "claim = ?", (join_id, claim)).fetchone()
            if seen is not None:
                return int(seen[0])
            size, fired, failed = chord
            if fired is not None or failed:
                return None
            db.execute("INSERT INTO chord_grown VALUES (?, ?, ?)", (join_id, claim, size))
            db.execute("UPDATE chords SET size = size + :count, "
                       "expires_at = coalesce(:until, expires_at) WHERE id = :id",
                       {"count": count, "until": _until(now, expires), "id": join_id})
            return int(size)

    def chord_values(self, join_id: str) -> dict[int, bytes | None]:
        rows = self._read(f"SELECT idx, value FROM chord_parts WHERE chord_id = :id AND EXISTS "
                          f"(SELECT 1 FROM chords WHERE id = :id AND {_ALIVE})", id=join_id)
        return dict(rows)

    def chord_reset(self, joins: Sequence[tuple[str, int, Mapping[int, bytes]]],
                    expires: float | None = None) -> None:
        until = _until(time.time(), expires)
        with self._transaction() as db:
            for join_id, size, parts in joins:
                db.execute("DELETE FROM chord_parts WHERE chord_id = ?", (join_id,))
                db.execute("INSERT OR REPLACE INTO chords (id, size, recorded, fired, failed, "
                           "expires_at) VALUES (?, ?, ?, NULL, 0, ?)",
                           (join_id, size, len(parts), until))
                db.executemany("INSERT INTO chord_parts VALUES (?, ?, ?)",
                               [(join_id, index, value) for index, value in parts.items()])

    # -- resume -----------------------------------------------------------------------------

    def reset(self, counted: Sequence[str], *, tracked: str | None = None,
              uncounted: Sequence[str] = (), flags: Sequence[str] = (),
              counters: Sequence[str] = ()) -> None:
        now = time.time()
        with self._transaction() as db:
            if tracked is not None:
                self._uncount(db, tracked, list(dict.fromkeys(counted)), now)
            db.executemany("DELETE FROM results WHERE id = ?",
                           [(task_id,) for task_id in (*counted, *uncounted)])
            db.executemany("DELETE FROM flags WHERE key = ?", [(key,) for key in flags])
            db.executemany("DELETE FROM counters WHERE key = ?", [(key,) for key in counters])

    @staticmethod
    def _uncount(db: sqlite3.Connection, tracked: str, task_ids: list[str], now: float) -> None:
        """Take the terminal records of ``task_ids`` out of the progress of ``tracked``."""
        gone: dict[str, int] = {}
        for batch in chunked(task_ids, _BATCH):
            rows = db.execute(f"SELECT state FROM results WHERE id IN "
                              f"({', '.join('?' * len(batch))}) AND state IN ({_TERMINAL}) "
                              f"AND (expires_at IS NULL OR expires_at > ?)", (*batch, now))
            for (state,) in rows:
                gone[state] = gone.get(state, 0) + 1
        db.executemany("UPDATE progress SET n = max(n - ?, 0) WHERE root_id = ? AND state = ?",
                       [(n, tracked, state) for state, n in gone.items()])
        db.execute("UPDATE progress SET updated = ? WHERE root_id = ?", (now, tracked))

    # -- tracked workflows ------------------------------------------------------------------

    def track_workflow(self, root_id: str, created: float, summary: bytes, detail: bytes,
                       expires: float | None, keep: int) -> None:
        with self._transaction() as db:  # an entry lives ``expires`` past its sending
            seq = db.execute(
                "INSERT OR REPLACE INTO workflows (root_id, created, summary, detail, expires_at)"
                " VALUES (?, ?, ?, ?, ?) RETURNING seq",
                (root_id, created, summary, detail, _until(created, expires))).fetchone()[0]
            # entries are numbered as sent: all but the ``keep`` newest go, through the key
            db.execute("DELETE FROM workflows WHERE seq <= ?", (seq - keep,))

    def recent_workflows(self, limit: int) -> list[TrackedWorkflow]:
        newest = self._read(f"SELECT root_id FROM workflows WHERE {_ALIVE} "
                            f"ORDER BY seq DESC LIMIT :limit", limit=limit)
        found = self.tracked_workflows([root_id for (root_id,) in newest])
        return [entry for entry in found if entry is not None]

    def tracked_workflows(self, root_ids: Sequence[str]) -> list[TrackedWorkflow | None]:
        entries: dict[str, tuple[float, bytes]] = {}
        counts: dict[str, dict[str, int]] = {}
        updated: dict[str, float] = {}
        for batch in chunked(root_ids, _BATCH):
            marks = ", ".join("?" * len(batch))
            alive = "(expires_at IS NULL OR expires_at > ?)"
            now = time.time()
            for root_id, created, summary in self._conn().execute(
                    f"SELECT root_id, created, summary FROM workflows WHERE root_id IN ({marks})"
                    f" AND {alive}", (*batch, now)):
                entries[root_id] = (created, summary)
            for root_id, state, n, at in self._conn().execute(
                    f"SELECT root_id, state, n, updated FROM progress WHERE root_id IN ({marks})"
                    f" AND {alive}", (*batch, now)):
                counts.setdefault(root_id, {})[state] = n
                updated[root_id] = max(at, updated.get(root_id, at))
        return [None if root_id not in entries else TrackedWorkflow(
                    root_id, entries[root_id][0], entries[root_id][1],
                    Progress(counts.get(root_id, {}), updated.get(root_id)))
                for root_id in root_ids]

    def workflow_detail(self, root_id: str) -> bytes | None:
        rows = self._read(f"SELECT detail FROM workflows WHERE root_id = :root AND {_ALIVE}",
                          root=root_id)
        return rows[0][0] if rows else None

    # -- flags and blobs --------------------------------------------------------------------

    def set_flag(self, key: str, expires: float | None = None) -> bool:
        now = time.time()
        with self._transaction() as db:
            return db.execute(
                "INSERT INTO flags VALUES (:key, :until) ON CONFLICT (key) DO UPDATE SET "
                "expires_at = excluded.expires_at WHERE flags.expires_at <= :now",
                {"key": key, "until": _until(now, expires), "now": now}).rowcount == 1

    def has_flag(self, key: str) -> bool:
        return bool(self._read(f"SELECT 1 FROM flags WHERE key = :key AND {_ALIVE}", key=key))

    def incr(self, key: str, expires: float | None = None) -> int:
        now = time.time()
        with self._transaction() as db:
            # an expired counter starts again from 1
            row = db.execute(
                "INSERT INTO counters VALUES (:key, 1, :until) ON CONFLICT (key) DO UPDATE SET "
                "value = CASE WHEN counters.expires_at <= :now THEN 1 ELSE counters.value + 1 END,"
                " expires_at = excluded.expires_at RETURNING value",
                {"key": key, "until": _until(now, expires), "now": now}).fetchone()
            return int(row[0])

    def put_blob(self, key: str, data: bytes, expires: float | None = None) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)",
                       (key, data, _until(time.time(), expires)))

    def put_blobs(self, items: Sequence[tuple[str, bytes]], expires: float | None = None) -> None:
        until = _until(time.time(), expires)
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)",
                           [(key, data, until) for key, data in items])

    def touch_blob(self, key: str, expires: float | None) -> None:
        until = _until(time.time(), expires)
        with self._transaction() as db:
            db.execute("UPDATE blobs SET expires_at = ? WHERE key = ? AND expires_at IS NOT NULL "
                       "AND (? IS NULL OR expires_at < ?)", (until, key, until, until))

    def get_blob(self, key: str) -> bytes | None:
        rows = self._read(f"SELECT data FROM blobs WHERE key = :key AND {_ALIVE}", key=key)
        return rows[0][0] if rows else None

    def delete_blob(self, key: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM blobs WHERE key = ?", (key,))

    # -- revocations ------------------------------------------------------------------------

    def revoke(self, ids: Iterable[str], expires: float | None = None) -> None:
        until = _until(time.time(), expires)
        with self._transaction() as db:
            # A revocation never shortens: keep the later expiry (NULL: never expires).
            db.executemany(
                "INSERT INTO revoked VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET expires_at = "
                "CASE WHEN revoked.expires_at IS NULL OR excluded.expires_at IS NULL THEN NULL "
                "ELSE max(revoked.expires_at, excluded.expires_at) END",
                [(revoked_id, until) for revoked_id in ids])

    def revoked(self) -> set[str]:
        return {revoked_id for (revoked_id,) in
                self._read(f"SELECT id FROM revoked WHERE {_ALIVE}")}

    # -- delay index ------------------------------------------------------------------------

    def delay_add(self, items: Sequence[tuple[float, str, bytes]]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT OR REPLACE INTO delayed (due, key, payload) VALUES (?, ?, ?)",
                           items)

    def delay_due(self, now: float, lease: float, limit: int) -> list[DelayedMessage]:
        with self._transaction() as db:
            rows = db.execute("SELECT key, payload FROM delayed WHERE due <= ? "
                              "ORDER BY due, key LIMIT ?", (now, limit)).fetchall()
            db.executemany("UPDATE delayed SET due = ? WHERE key = ?",
                           [(now + lease, key) for key, _ in rows])
        return [DelayedMessage(key, payload) for key, payload in rows]

    def delay_done(self, keys: Iterable[str]) -> None:
        with self._transaction() as db:
            db.executemany("DELETE FROM delayed WHERE key = ?", [(key,) for key in keys])

    def delay_expedite(self, task_ids: Iterable[str], now: float) -> int:
        # keys are "<id>:<retries>": the range [id + ":", id + ";") holds one id's keys
        with self._transaction() as db:
            return sum(db.execute("UPDATE delayed SET due = ? WHERE key >= ? AND key < ?",
                                  (now, f"{task_id}:", f"{task_id};")).rowcount
                       for task_id in task_ids)

    def delay_pending(self, task_ids: Iterable[str]) -> set[str]:
        # keys are "<id>:<retries>": the range [id + ":", id + ";") holds one id's keys
        return {task_id for task_id in task_ids
                if self._read("SELECT 1 FROM delayed WHERE key >= :lo AND key < :hi LIMIT 1",
                              lo=f"{task_id}:", hi=f"{task_id};")}

    def delay_count(self) -> int:
        return int(self._read("SELECT count(*) FROM delayed")[0][0])

    def delay_peek(self, limit: int) -> list[tuple[float, bytes]]:
        return [(float(due), payload) for due, payload in self._read(
            "SELECT due, payload FROM delayed ORDER BY due LIMIT :limit", limit=limit)]

    def delay_horizon(self) -> float | None:
        latest = self._read("SELECT max(due) FROM delayed")[0][0]
        return None if latest is None else float(latest)

    # -- leases -----------------------------------------------------------------------------

    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._transaction() as db:
            return db.execute(
                "INSERT INTO leases VALUES (:key, :owner, :until) ON CONFLICT (key) DO UPDATE "
                "SET owner = excluded.owner, expires_at = excluded.expires_at "
                "WHERE leases.owner = excluded.owner OR leases.expires_at <= :now",
                {"key": key, "owner": owner, "until": now + ttl, "now": now}).rowcount == 1

    def release_lease(self, key: str, owner: str) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM leases WHERE key = ? AND owner = ?", (key, owner))

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        """Close this process's connections (other threads' included)."""
        if self._pid == os.getpid():
            connections, self._connections = self._connections, {}
            for db in connections.values():
                db.close()


def _count(db: sqlite3.Connection, tracked: str | None, state: str, n: int, now: float,
           expires: float | None) -> None:
    """Add ``n`` nodes recorded in ``state`` to the progress of ``tracked`` (terminal only)."""
    if tracked is not None and n and is_terminal(state):
        db.execute(_COUNT, {"root": tracked, "state": state, "n": n, "now": now,
                            "until": _until(now, expires)})


def _until(now: float, expires: float | None) -> float | None:
    return None if expires is None else now + expires


def _drop_expired_chord(db: sqlite3.Connection, join_id: str, now: float) -> None:
    """Delete a chord that expired, parts first, so its id can start a fresh count."""
    params = {"id": join_id, "now": now}
    for table in ("chord_parts", "chord_grown"):
        db.execute(f"DELETE FROM {table} WHERE chord_id = :id AND EXISTS "
                   f"(SELECT 1 FROM chords WHERE id = :id AND expires_at <= :now)", params)
    db.execute("DELETE FROM chords WHERE id = :id AND expires_at <= :now", params)
