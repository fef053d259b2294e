"""The SQL behind the SQLite broker transport: one connection per channel, one short statement per call.

Every process that opens the file sees the same broker state::

    messages(id, queue, priority, payload, tag, deadline, deliveries, holder)
        One row per message per queue; ``payload`` is kombu's message dict as JSON.
        Ready when ``tag`` is NULL. Reserved otherwise: ``tag`` is the delivery tag of the
        current claim, ``holder`` the claiming channel and ``deadline`` (unix time) when
        the claim lapses unless its holder renews it.
        ``id`` gives FIFO order inside a priority; ``deliveries`` counts claims.
    queues(name)                                 declared queues (passive declares)
    exchanges(name, type)                        declared exchanges, to route by type
    bindings(exchange, routing_key, pattern, queue)
    consumed(queue, since)                       queues some consumer has ever consumed

Two partial indexes keep the hot paths logarithmic: ``messages_ready`` (claim, size,
purge) covers only ready rows, ``messages_reserved`` (ack, release, sweep) only reserved
ones. Each operation is one statement in autocommit mode, hence its own transaction;
the few that need several statements run inside ``BEGIN IMMEDIATE`` so they take the
write lock up front and wait on ``busy_timeout`` instead of failing on a stale snapshot.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA = """
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    payload TEXT NOT NULL,
    tag TEXT,
    deadline REAL,
    deliveries INTEGER NOT NULL DEFAULT 0,
    holder TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready
    ON messages (queue, priority DESC, id) WHERE tag IS NULL;
CREATE UNIQUE INDEX IF NOT EXISTS messages_reserved
    ON messages (tag) WHERE tag IS NOT NULL;
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY, max_length INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exchanges (name TEXT PRIMARY KEY, type TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bindings (
    exchange TEXT NOT NULL,
    routing_key TEXT NOT NULL,
    pattern TEXT,
    queue TEXT NOT NULL,
    PRIMARY KEY (exchange, routing_key, queue)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS consumed (queue TEXT PRIMARY KEY, since REAL NOT NULL) WITHOUT ROWID;
COMMIT;
"""

_NEXT_READY = (
    "SELECT id FROM messages WHERE queue = :queue AND tag IS NULL"
    " ORDER BY priority DESC, id LIMIT 1"
)
_CLAIM = (
    "UPDATE messages SET tag = :tag, deadline = :deadline, holder = :holder,"
    f" deliveries = deliveries + 1 WHERE id = ({_NEXT_READY}) RETURNING payload, deliveries"
)
_TAKE = f"DELETE FROM messages WHERE id = ({_NEXT_READY}) RETURNING payload, deliveries + 1"
_INSERT = "INSERT INTO messages (queue, priority, payload) VALUES (?, ?, ?)"
_DELETE_TAG = "DELETE FROM messages WHERE tag = ?"
_RELEASE_TAG = "UPDATE messages SET tag = NULL, deadline = NULL, holder = NULL WHERE tag = ?"
_RELEASE_LAPSED = (
    "UPDATE messages SET tag = NULL, deadline = NULL, holder = NULL"
    " WHERE tag IS NOT NULL AND deadline <= ?"
)
_RENEW = "UPDATE messages SET deadline = ? WHERE holder = ? AND tag IS NOT NULL"

# Drop the oldest ready messages of a capped queue beyond its max_length (RabbitMQ's
# x-max-length, overflow drop-head).
_TRIM = (
    "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE queue = :queue"
    " AND tag IS NULL ORDER BY id LIMIT max(0, (SELECT count(*) FROM messages"
    " WHERE queue = :queue AND tag IS NULL) - :max_length))"
)

_SYNCHRONOUS = frozenset({"OFF", "NORMAL", "FULL", "EXTRA"})

#: Connections inherited through fork(). SQLite forbids using them in the child, and
#: closing one there can disturb the parent's locks, so the child keeps them referenced
#: (never deallocated, hence never closed) and opens its own.
_INHERITED: list[sqlite3.Connection] = []


class Claimed(NamedTuple):
    """A message row handed to a consumer: kombu's JSON payload and its delivery count."""

    payload: str
    deliveries: int


class Store:
    """One process's connection to the broker file, reopened when the process has forked.

    Thread-safe: kombu may ack from a thread other than the one draining events.
    """

    def __init__(self, path: Path, busy_timeout: float = 5.0, synchronous: str = "NORMAL"):
        if synchronous.upper() not in _SYNCHRONOUS:
            raise ValueError(f"synchronous={synchronous!r}; expected one of {sorted(_SYNCHRONOUS)}")
        self.path = path
        self.busy_timeout = busy_timeout
        self.synchronous = synchronous.upper()
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._conn = self._connect()

    def _connect(self) -> sqlite3.Connection:
        """Open the file in WAL mode (readers never block the writer) and create the schema."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        # A row that is not UTF-8 must reach the transport (to be dead-lettered), not fail
        # the read: its bytes come back as lone surrogates, which decoding refuses.
        conn.text_factory = lambda data: data.decode("utf-8", "surrogateescape")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.executescript(SCHEMA)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(queues)")}
        if "max_length" not in columns:  # a file made before queues could be capped
            conn.execute("ALTER TABLE queues ADD COLUMN max_length INTEGER")
        columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
        if "holder" not in columns:  # a file made before leases were renewed
            conn.execute("ALTER TABLE messages ADD COLUMN holder TEXT")
        conn.execute("CREATE INDEX IF NOT EXISTS messages_held ON messages (holder)"
                     " WHERE tag IS NOT NULL")
        return conn

    @contextmanager
    def _locked(self) -> Iterator[sqlite3.Connection]:
        """Yield this process's connection, held by the calling thread only."""
        if self._closed:
            raise sqlite3.ProgrammingError(f"the broker store {self.path} is closed")
        if self._pid != os.getpid():
            _INHERITED.append(self._conn)
            self._lock = threading.Lock()  # Another thread of the parent may have held it.
            self._pid = os.getpid()
            self._conn = self._connect()
        with self._lock:
            yield self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """Run several statements atomically, taking the write lock at the start."""
        with self._locked() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        """Run one statement and fetch every row before another thread can use the connection."""
        with self._locked() as conn:
            return conn.execute(sql, params).fetchall()

    def _change(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one writing statement; return how many rows it changed."""
        with self._locked() as conn:
            return conn.execute(sql, params).rowcount

    def _change_each(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run one writing statement per row, in a single transaction when there are several."""
        if len(rows) <= 1:
            return sum(self._change(sql, row) for row in rows)
        with self._transaction() as conn:
            return conn.executemany(sql, rows).rowcount

    def close(self) -> None:
        """Close this process's connection (one inherited through fork is only dropped).

        Idempotent; a second close, even from another thread, is harmless.
        """
        if self._closed:
            return
        if self._pid != os.getpid():
            _INHERITED.append(self._conn)
            self._closed = True
            return
        with self._lock:
            self._closed = True
            self._conn.close()

    def version(self) -> tuple[int, int]:
        """A value that changes whenever any connection, this one included, commits a change.

        ``data_version`` only moves for other connections' commits, so this connection's
        own ``total_changes`` is paired with it.
        """
        with self._locked() as conn:
            (data_version,) = conn.execute("PRAGMA data_version").fetchone()
            return data_version, conn.total_changes

    # -- messages ---------------------------------------------------------------------------

    def put(self, queues: Sequence[str], priority: int, payload: str) -> None:
        """Append ``payload`` to each queue, in one transaction when there are several."""
        self._change_each(_INSERT, [(queue, priority, payload) for queue in queues])

    def put_capped(self, queues: Sequence[str], priority: int, payload: str) -> None:
        """Append ``payload`` to each queue and, in the same transaction, drop the oldest
        ready messages of those declared with a ``max_length`` beyond it."""
        with self._transaction() as conn:
            conn.executemany(_INSERT, [(queue, priority, payload) for queue in queues])
            marks = ",".join("?" * len(queues))
            for queue, max_length in conn.execute(
                    f"SELECT name, max_length FROM queues WHERE max_length IS NOT NULL"
                    f" AND name IN ({marks})", list(queues)).fetchall():
                conn.execute(_TRIM, {"queue": queue, "max_length": max_length})

    def claim(self, queue: str, tag: str, deadline: float, holder: str) -> Claimed | None:
        """Reserve the next ready message (highest priority, then oldest) for ``holder``
        until ``deadline``."""
        rows = self._rows(_CLAIM, {"queue": queue, "tag": tag, "deadline": deadline,
                                   "holder": holder})
        return Claimed(*rows[0]) if rows else None

    def renew(self, holder: str, deadline: float) -> int:
        """Extend every claim of ``holder`` to ``deadline`` (its heartbeat)."""
        return self._change(_RENEW, (deadline, holder))

    def dead_letter(self, tag: str | None, dead_queue: str, payload: str) -> None:
        """In one transaction, delete the row claimed under ``tag`` (None: already taken)
        and append ``payload`` to ``dead_queue``."""
        with self._transaction() as conn:
            if tag is not None:
                conn.execute(_DELETE_TAG, (tag,))
            conn.execute(_INSERT, (dead_queue, 0, payload))

    def take(self, queue: str) -> Claimed | None:
        """Remove and return the next ready message, for consumers that never ack."""
        rows = self._rows(_TAKE, {"queue": queue})
        return Claimed(*rows[0]) if rows else None

    def delete(self, tags: Sequence[str]) -> int:
        """Delete the messages reserved under ``tags`` (ack, or reject without requeue).

        A tag whose claim lapsed and was claimed again matches nothing, so a late ack
        cannot delete a message another consumer now holds.
        """
        return self._change_each(_DELETE_TAG, [(tag,) for tag in tags])

    def release(self, tags: Sequence[str]) -> int:
        """Make the messages reserved under ``tags`` ready again, in their original place."""
        return self._change_each(_RELEASE_TAG, [(tag,) for tag in tags])

    def release_lapsed(self, now: float) -> int:
        """Make every reservation whose deadline has passed ready again (its holder died)."""
        return self._change(_RELEASE_LAPSED, (now,))

    def size(self, queue: str) -> int:
        """Count the ready messages of ``queue`` (AMQP's message_count: unacked excluded)."""
        ((count,),) = self._rows(
            "SELECT count(*) FROM messages WHERE queue = ? AND tag IS NULL", (queue,)
        )
        return int(count)

    def payloads(self, queue: str, limit: int) -> list[str]:
        """Up to ``limit`` messages of ``queue``, waiting or claimed, oldest first."""
        return [payload for (payload,) in self._rows(
            "SELECT payload FROM messages WHERE queue = ? ORDER BY id LIMIT ?", (queue, limit))]

    def purge(self, queue: str) -> int:
        """Delete the ready messages of ``queue``; return how many."""
        return self._change("DELETE FROM messages WHERE queue = ? AND tag IS NULL", (queue,))

    # -- queues, exchanges and bindings -----------------------------------------------------

    def declare_queue(self, queue: str, max_length: int | None = None) -> None:
        """Record that ``queue`` exists, holding at most ``max_length`` ready messages."""
        self._change("INSERT INTO queues (name, max_length) VALUES (?, ?) ON CONFLICT (name)"
                     " DO UPDATE SET max_length = excluded.max_length", (queue, max_length))

    def has_queue(self, queue: str) -> bool:
        """Whether ``queue`` was declared (by any process) and not deleted since."""
        return bool(self._rows("SELECT 1 FROM queues WHERE name = ?", (queue,)))

    def delete_queue(self, queue: str) -> None:
        """Forget ``queue``: its messages (reserved ones too) and its bindings."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM messages WHERE queue = ?", (queue,))
            conn.execute("DELETE FROM bindings WHERE queue = ?", (queue,))
            conn.execute("DELETE FROM queues WHERE name = ?", (queue,))

    def mark_consumed(self, queue: str) -> None:
        """Record that a consumer (a worker) has started consuming ``queue``."""
        self._change("INSERT OR IGNORE INTO consumed (queue, since) VALUES (?, ?)",
                     (queue, time.time()))

    def ever_consumed(self, queue: str) -> bool:
        """Whether any process has ever consumed ``queue`` from this file."""
        return bool(self._rows("SELECT 1 FROM consumed WHERE queue = ?", (queue,)))

    def declare_exchange(self, exchange: str, type_: str) -> None:
        """Record the exchange's type; the first declaration wins, as in AMQP."""
        self._change(
            "INSERT OR IGNORE INTO exchanges (name, type) VALUES (?, ?)", (exchange, type_)
        )

    def exchange_type(self, exchange: str) -> str | None:
        """The type ``exchange`` was declared with by any process, or None."""
        rows = self._rows("SELECT type FROM exchanges WHERE name = ?", (exchange,))
        return str(rows[0][0]) if rows else None

    def delete_exchange(self, exchange: str) -> None:
        """Forget ``exchange`` and its bindings."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM bindings WHERE exchange = ?", (exchange,))
            conn.execute("DELETE FROM exchanges WHERE name = ?", (exchange,))

    def bind(self, exchange: str, routing_key: str, pattern: str | None, queue: str) -> None:
        """Persist a binding so producers in other processes route through it."""
        self._change(
            "INSERT OR IGNORE INTO bindings (exchange, routing_key, pattern, queue)"
            " VALUES (?, ?, ?, ?)",
            (exchange, routing_key, pattern, queue),
        )

    def unbind(self, exchange: str, routing_key: str, queue: str) -> None:
        """Remove one binding."""
        self._change(
            "DELETE FROM bindings WHERE exchange = ? AND routing_key = ? AND queue = ?",
            (exchange, routing_key, queue),
        )

    def table(self, exchange: str) -> list[tuple[str, str | None, str]]:
        """The exchange's bindings as kombu's ``(routing_key, pattern, queue)`` rows."""
        rows = self._rows(
            "SELECT routing_key, pattern, queue FROM bindings WHERE exchange = ?", (exchange,)
        )
        return [(key, pattern, queue) for key, pattern, queue in rows]
