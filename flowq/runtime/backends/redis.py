"""The production result backend: Redis, through redis-py.

Each atomic operation of more than one command is a Lua script in ``lua/`` (its header
lists the keys it touches); the key names come from :mod:`flowq.runtime.keys`. A result is
one string key ``"<state>\\n<token>\\n<payload>"``; a terminal write publishes on the
task's channel, which is how :meth:`RedisBackend.wait` wakes without polling.

Connection errors are retried with a short exponential backoff, then surface as
:class:`~flowq.exceptions.BackendUnavailable`. Every operation may be retried as a whole,
even when the server ran it and only the reply was lost: results, chord parts and flags are
first-write-wins, and a call that writes once-only things carries a random token, so its
retry recognises its own write and gets the same answer (``new``, ``first_failure``, a set
flag); a chord's completion is handed again to the claimant that retries.

:class:`~flowq.runtime.backends.redis_cluster.RedisClusterBackend` is this backend on a
Redis Cluster; the scripts it alone runs live in ``lua/`` too.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any, Concatenate, ParamSpec, TypeVar, cast, overload
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.retry import Retry

from flowq import states
from flowq.exceptions import BackendUnavailable
from flowq.runtime.backends.base import (
    ChordPart,
    DelayedMessage,
    PendingWait,
    Progress,
    Record,
    ResultBackend,
    StoreOutcome,
    TrackedWorkflow,
    chunked,
)
from flowq.runtime.keys import DEFAULT_PREFIX, Keys
from flowq.settings import mask_url

P = ParamSpec("P")
T = TypeVar("T")

#: Keys per MGET/DEL/SUBSCRIBE and commands per pipeline round trip.
_BATCH = 1000
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError)
_TERMINAL = " ".join(sorted(states.READY_STATES))
_LUA = resources.files(__package__).joinpath("lua")
#: script -> the library files (``lua/lib_*.lua``) it runs after; cluster-only scripts too.
_SCRIPTS: dict[str, tuple[str, ...]] = {
    "store": ("lib_record", "lib_part"), "store_many": (), "reset": (), "flag_set": (),
    "delay_due": (), "lease_acquire": (), "lease_release": (),
    "store_record": ("lib_record",), "store_part": ("lib_part",), "store_absent": (),
    "chord_init": (), "take_record": (), "chord_grow": ()}
SOURCES = {name: "\n".join(_LUA.joinpath(f"{part}.lua").read_text()
                            for part in (*libraries, name))
           for name, libraries in _SCRIPTS.items()}


def _retried(method: Callable[Concatenate[RedisBackend, P], T]
             ) -> Callable[Concatenate[RedisBackend, P], T]:
    """Run ``method`` through :meth:`RedisBackend._retry`."""
    @functools.wraps(method)
    def call(self: RedisBackend, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._retry(functools.partial(method, self, *args, **kwargs))
    return call


class RedisBackend(ResultBackend):
    """Result backend on a Redis server.

    ``url``: ``redis://[:password@]host:port/db`` or ``rediss://...`` (TLS); a
    ``key_prefix`` query parameter sets the prefix of every key (the ``key_prefix``
    argument wins over it; default ``flowq:``). ``retries`` and ``retry_delay`` bound the
    retries of a failed connection (delays double from ``retry_delay``); other keyword
    arguments go to :meth:`redis.Redis.from_url` (``socket_timeout``...).
    """

    #: Errors that an operation is retried for (then BackendUnavailable).
    transient: tuple[type[Exception], ...] = _TRANSIENT

    def __init__(self, url: str, key_prefix: str | None = None, *, retries: int = 5,
                 retry_delay: float = 0.1, **redis_options: Any):
        self.url = mask_url(url) or url
        server_url, url_prefix = _split_key_prefix(url)
        self.keys = self._keys(key_prefix or url_prefix or DEFAULT_PREFIX)
        self._retries = retries
        self._retry_delay = retry_delay
        self._open(server_url, redis_options)
        self._channel_offset = len(self.keys.channel("").encode())
        self._reset_pubsubs()

    def _keys(self, prefix: str) -> Keys:
        return Keys(prefix)

    def _open(self, server_url: str, redis_options: dict[str, Any]) -> None:
        """Create the client and its scripts (redis-py connects on first use)."""
        # redis-py's own retries are off: ours cover whole operations, including wait().
        self._client = redis.Redis.from_url(server_url, retry=Retry(NoBackoff(), 0),
                                            **redis_options)
        self._scripts = {name: self._client.register_script(source)
                         for name, source in SOURCES.items()}

    # -- results ----------------------------------------------------------------------------

    def store(self, task_id: str, state: str, payload: bytes, *,
              part: ChordPart | None = None, expires: float | None = None,
              tracked: str | None = None) -> StoreOutcome:
        token = _token()  # the same for every retry of this call
        keys = [self.keys.result(task_id)]
        args: list[Any] = [_record(state, payload, token), token, _ms(expires) or "",
                           self.keys.channel(task_id), _TERMINAL, _now_ms() if tracked else ""]
        if part is not None:
            keys.append(self.keys.chord(part.join_id))
            args += [part.index, _encode_part(part.value), part.claimant]
        if tracked is not None:
            keys.append(self.keys.workflow_progress(tracked))
        new, first_failure, lost, joined, *values = self._retry(
            functools.partial(self._scripts["store"], keys, args))
        return StoreOutcome(new=bool(new), joined=tuple(values) if joined else None,
                            first_failure=bool(first_failure), lost=bool(lost))

    @_retried
    def store_many(self, records: Sequence[tuple[str, str, bytes]],
                   expires: float | None = None, tracked: str | None = None) -> None:
        for batch in chunked(records, _BATCH // 2):
            keys = [self.keys.result(task_id) for task_id, _, _ in batch]
            args: list[Any] = [_ms(expires) or "", _now_ms() if tracked else ""]
            for task_id, state, payload in batch:
                args += [_record(state, payload), state, self.keys.channel(task_id)]
            if tracked is not None:
                keys.append(self.keys.workflow_progress(tracked))
            self._scripts["store_many"](keys, args)

    @_retried
    def get_many(self, task_ids: Sequence[str]) -> list[Record | None]:
        return self._get_many(task_ids)

    def _get_many(self, task_ids: Sequence[str]) -> list[Record | None]:
        records: list[Record | None] = []
        for batch in chunked(task_ids, _BATCH):
            raw = self._mget([self.keys.result(task_id) for task_id in batch])
            records += [None if item is None else _decode_record(item) for item in raw]
        return records

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        return cast("list[bytes | None]", self._client.mget(keys))

    def wait(self, task_ids: Sequence[str], timeout: float | None) -> list[Record]:
        waiting = PendingWait(task_ids, timeout)
        self._retry(functools.partial(self._wait, waiting))
        return waiting.records()

    def _wait(self, waiting: PendingWait) -> None:
        """Check, subscribe, check again, then fetch whatever a wake-up names.

        The second check runs only once the server confirmed every subscription, so a
        record stored between the two checks is announced to us; a retry after a dropped
        connection starts over with what is still pending.
        """
        self._fetch(waiting, waiting.pending)
        if waiting.done:
            return
        with self._lent_pubsub() as pubsub:
            self._subscribe(pubsub, waiting)
            self._fetch(waiting, waiting.pending)
            while not waiting.done:
                self._fetch(waiting, self._wakeups(pubsub, waiting.time_left()))

    def _fetch(self, waiting: PendingWait, task_ids: Sequence[str]) -> None:
        waiting.offer(task_ids, self._get_many(task_ids))

    def _subscribe(self, pubsub: PubSub, waiting: PendingWait) -> None:
        channels = [self.keys.channel(task_id) for task_id in waiting.pending]
        for batch in chunked(channels, _BATCH):
            pubsub.subscribe(*batch)
        unconfirmed = {channel.encode() for channel in channels}
        while unconfirmed:
            message = pubsub.get_message(timeout=waiting.time_left())  # type: ignore[arg-type]
            if message is not None and message["type"] == "subscribe":
                unconfirmed.discard(message["channel"])

    def _wakeups(self, pubsub: PubSub, timeout: float | None) -> list[str]:
        """Task ids announced within ``timeout``: the first message, then all already read."""
        woken: list[str] = []
        message = pubsub.get_message(timeout=timeout)  # type: ignore[arg-type]  # None: block
        while message is not None:
            if message["type"] == "message":
                woken.append(message["channel"][self._channel_offset:].decode())
            message = pubsub.get_message(timeout=0)
        return woken

    @contextlib.contextmanager
    def _lent_pubsub(self) -> Iterator[PubSub]:
        """An idle PubSub of this process (or a new one) for one wait() at a time.

        Only a wait that ended cleanly gives it back: after an error its connection may
        hold replies of subscriptions that are not ours to count.
        """
        if self._pubsub_pid != os.getpid():
            self._reset_pubsubs()  # the parent's sockets are not ours to read
        with self._pubsub_lock:
            pubsub = self._idle_pubsubs.pop() if self._idle_pubsubs else self._client.pubsub()
        try:
            yield pubsub
        except BaseException:
            pubsub.close()
            raise
        try:
            pubsub.unsubscribe()
        except self.transient:
            pubsub.close()
            return
        with self._pubsub_lock:
            self._idle_pubsubs.append(pubsub)

    def _reset_pubsubs(self) -> None:
        self._pubsub_lock = threading.Lock()
        self._idle_pubsubs: list[PubSub] = []
        self._pubsub_pid = os.getpid()

    @_retried
    def forget(self, task_ids: Iterable[str]) -> None:
        for batch in chunked(list(task_ids), _BATCH):
            self._client.delete(*[self.keys.result(task_id) for task_id in batch])

    # -- chords -----------------------------------------------------------------------------

    @_retried
    def chord_init(self, joins: Sequence[tuple[str, int]], expires: float | None = None) -> None:
        for batch in chunked(joins, _BATCH // 2):
            pipe = self._client.pipeline(transaction=True)  # never a chord without its expiry
            for join_id, size in batch:
                key = self.keys.chord(join_id)
                pipe.hsetnx(key, "size", size)
                if expires is not None:
                    pipe.pexpire(key, _ms(expires))
            pipe.execute()

    def chord_grow(self, join_id: str, claim: str, count: int,
                   expires: float | None = None) -> int | None:
        before = int(self._retry(functools.partial(  # a retry repeats the same claim
            self._scripts["chord_grow"], [self.keys.chord(join_id)],
            [claim, count, _ms(expires) or ""])))
        return None if before < 0 else before

    @_retried
    def chord_values(self, join_id: str) -> dict[int, bytes | None]:
        fields = cast("dict[bytes, bytes]", self._client.hgetall(self.keys.chord(join_id)))
        return {int(field): _decode_part(value) for field, value in fields.items()
                if field.isdigit()}

    # -- tracked workflows ------------------------------------------------------------------

    @_retried
    def track_workflow(self, root_id: str, created: float, summary: bytes, detail: bytes,
                       expires: float | None, keep: int) -> None:
        index = self.keys.workflows
        pipe = self._client.pipeline(transaction=True)  # never an entry without its summary
        pipe.set(self.keys.workflow_summary(root_id), summary, px=_ms(expires))
        pipe.set(self.keys.workflow_detail(root_id), detail, px=_ms(expires))
        pipe.zadd(index, {root_id: created})
        pipe.zremrangebyrank(index, 0, -keep - 1)
        if expires is not None:
            pipe.zremrangebyscore(index, "-inf", f"({time.time() - expires}")
            pipe.pexpire(index, _ms(expires))
        pipe.execute()

    @_retried
    def recent_workflows(self, limit: int) -> list[TrackedWorkflow]:
        newest = cast("list[tuple[bytes, float]]", self._client.zrevrange(
            self.keys.workflows, 0, limit - 1, withscores=True))
        roots = [root_id.decode() for root_id, _ in newest]
        return [entry for entry in self._tracked(roots, [created for _, created in newest])
                if entry is not None]

    @_retried
    def tracked_workflows(self, root_ids: Sequence[str]) -> list[TrackedWorkflow | None]:
        return self._tracked(root_ids, None)

    def _tracked(self, root_ids: Sequence[str],
                 created: Sequence[float] | None) -> list[TrackedWorkflow | None]:
        """Summaries and progress of ``root_ids`` (and their times, unless ``created``
        gives them) in one round trip per batch."""
        found: list[TrackedWorkflow | None] = []
        for start in range(0, len(root_ids), _BATCH // 3):
            batch = root_ids[start:start + _BATCH // 3]
            pipe = self._client.pipeline(transaction=False)
            for root_id in batch:
                pipe.get(self.keys.workflow_summary(root_id))
                pipe.hgetall(self.keys.workflow_progress(root_id))
                if created is None:
                    pipe.zscore(self.keys.workflows, root_id)
            replies = pipe.execute()
            step = 2 if created is not None else 3
            for offset, root_id in enumerate(batch):
                summary, progress, *score = replies[offset * step:(offset + 1) * step]
                sent = created[start + offset] if created is not None else score[0]
                found.append(None if summary is None or sent is None else TrackedWorkflow(
                    root_id, float(sent), summary, _decode_progress(progress)))
        return found

    @_retried
    def workflow_detail(self, root_id: str) -> bytes | None:
        return cast("bytes | None", self._client.get(self.keys.workflow_detail(root_id)))

    @_retried
    def chord_reset(self, joins: Sequence[tuple[str, int, Mapping[int, bytes]]],
                    expires: float | None = None) -> None:
        for batch in chunked(joins, _BATCH // 4):
            pipe = self._client.pipeline(transaction=True)  # each chord replaced whole
            for join_id, size, parts in batch:
                key = self.keys.chord(join_id)
                pipe.delete(key)
                pipe.hset(key, mapping={"size": size, "n": len(parts),
                                        **{str(i): _encode_part(v) for i, v in parts.items()}})
                if expires is not None:
                    pipe.pexpire(key, _ms(expires))
            pipe.execute()

    # -- resume -----------------------------------------------------------------------------

    def reset(self, counted: Sequence[str], *, tracked: str | None = None,
              uncounted: Sequence[str] = (), flags: Sequence[str] = (),
              counters: Sequence[str] = ()) -> None:
        progress = self.keys.workflow_progress(tracked) if tracked else self.keys.prefix
        now = str(_now_ms()) if tracked else ""
        for batch in chunked([self.keys.result(task_id) for task_id in counted], _BATCH // 2):
            self._retry(functools.partial(self._scripts["reset"], [progress, *batch],
                                          [now, len(batch), _TERMINAL]))
        others = [*(self.keys.result(task_id) for task_id in uncounted),
                  *(self.keys.flag(key) for key in flags),
                  *(self.keys.counter(key) for key in counters)]
        for batch in chunked(others, _BATCH):
            self._retry(functools.partial(self._client.delete, *batch))

    # -- flags and blobs --------------------------------------------------------------------

    def set_flag(self, key: str, expires: float | None = None) -> bool:
        args = [_token(), _ms(expires) or ""]  # the same for every retry of this call
        return bool(self._retry(lambda: self._scripts["flag_set"]([self.keys.flag(key)], args)))

    @_retried
    def has_flag(self, key: str) -> bool:
        return bool(self._client.exists(self.keys.flag(key)))

    @_retried
    def incr(self, key: str, expires: float | None = None) -> int:
        pipe = self._client.pipeline(transaction=True)
        pipe.incr(self.keys.counter(key))
        if expires is not None:
            pipe.pexpire(self.keys.counter(key), _ms(expires))
        return int(pipe.execute()[0])

    @_retried
    def put_blob(self, key: str, data: bytes, expires: float | None = None) -> None:
        self._client.set(self.keys.blob(key), data, px=_ms(expires))

    @_retried
    def put_blobs(self, items: Sequence[tuple[str, bytes]], expires: float | None = None) -> None:
        for batch in chunked(items, _BATCH):
            pipe = self._client.pipeline(transaction=False)
            for key, data in batch:
                pipe.set(self.keys.blob(key), data, px=_ms(expires))
            pipe.execute()

    @_retried
    def get_blob(self, key: str) -> bytes | None:
        return cast("bytes | None", self._client.get(self.keys.blob(key)))

    @_retried
    def touch_blob(self, key: str, expires: float | None) -> None:
        if expires is None:
            self._client.persist(self.keys.blob(key))
        else:  # GT: never shortens (a key without expiry counts as infinite)
            self._client.pexpire(self.keys.blob(key), _ms(expires), gt=True)

    @_retried
    def delete_blob(self, key: str) -> None:
        self._client.delete(self.keys.blob(key))

    # -- revocations ------------------------------------------------------------------------

    @_retried
    def revoke(self, ids: Iterable[str], expires: float | None = None) -> None:
        until = math.inf if expires is None else time.time() + expires
        for batch in chunked(list(ids), _BATCH):
            # GT: a revocation never shortens.
            self._client.zadd(self.keys.revoked, dict.fromkeys(batch, until), gt=True)

    @_retried
    def revoked(self) -> set[str]:
        pipe = self._client.pipeline(transaction=True)
        pipe.zremrangebyscore(self.keys.revoked, "-inf", time.time())
        pipe.zrange(self.keys.revoked, 0, -1)
        return {revoked_id.decode() for revoked_id in pipe.execute()[1]}

    # -- delay index ------------------------------------------------------------------------

    @_retried
    def delay_add(self, items: Sequence[tuple[float, str, bytes]]) -> None:
        for batch in chunked(items, _BATCH):
            pipe = self._client.pipeline(transaction=True)  # never a due key without payload
            pipe.hset(self.keys.delay_payloads, mapping={key: data for _, key, data in batch})
            pipe.zadd(self.keys.delay_due, {key: due for due, key, _ in batch})
            pipe.execute()

    @_retried
    def delay_due(self, now: float, lease: float, limit: int) -> list[DelayedMessage]:
        flat = self._scripts["delay_due"]([self.keys.delay_due, self.keys.delay_payloads],
                                          [now, lease, limit])
        return [DelayedMessage(key.decode(), payload)
                for key, payload in zip(flat[::2], flat[1::2], strict=True)]

    @_retried
    def delay_done(self, keys: Iterable[str]) -> None:
        for batch in chunked(list(keys), _BATCH):
            pipe = self._client.pipeline(transaction=True)
            pipe.zrem(self.keys.delay_due, *batch)
            pipe.hdel(self.keys.delay_payloads, *batch)
            pipe.execute()

    @_retried
    def delay_expedite(self, task_ids: Iterable[str], now: float) -> int:
        keys = self._delay_keys_of(set(task_ids))
        for batch in chunked(keys, _BATCH):
            self._client.zadd(self.keys.delay_due, dict.fromkeys(batch, now), xx=True)
        return len(keys)

    @_retried
    def delay_pending(self, task_ids: Iterable[str]) -> set[str]:
        return {key.decode().rpartition(":")[0] for key in self._delay_keys_of(set(task_ids))}

    def _delay_keys_of(self, wanted: set[str]) -> list[bytes]:
        """Keys of the delay index (``<id>:<retries>``) of ``wanted`` ids: one pass over
        the index, not one per id."""
        if not wanted or not self._client.zcard(self.keys.delay_due):
            return []
        return [key for key, _ in self._client.zscan_iter(self.keys.delay_due, count=1000)
                if key.decode().rpartition(":")[0] in wanted]

    @_retried
    def delay_count(self) -> int:
        return int(self._client.zcard(self.keys.delay_due))

    @_retried
    def delay_peek(self, limit: int) -> list[tuple[float, bytes]]:
        soonest = cast("list[tuple[bytes, float]]", self._client.zrange(
            self.keys.delay_due, 0, limit - 1, withscores=True))
        if not soonest:
            return []
        payloads = cast("list[bytes | None]", self._client.hmget(
            self.keys.delay_payloads, [key for key, _ in soonest]))
        return [(float(due), payload) for (_, due), payload in zip(soonest, payloads)
                if payload is not None]

    @_retried
    def delay_horizon(self) -> float | None:
        latest = self._client.zrange(self.keys.delay_due, -1, -1, withscores=True)
        return float(latest[0][1]) if latest else None

    # -- leases -----------------------------------------------------------------------------

    @_retried
    def acquire_lease(self, key: str, owner: str, ttl: float) -> bool:
        return bool(self._scripts["lease_acquire"]([self.keys.lease(key)], [owner, _ms(ttl)]))

    @_retried
    def release_lease(self, key: str, owner: str) -> None:
        self._scripts["lease_release"]([self.keys.lease(key)], [owner])

    # -- lifecycle ----------------------------------------------------------------------------

    def close(self) -> None:
        with self._pubsub_lock:
            idle, self._idle_pubsubs = self._idle_pubsubs, []
        for pubsub in idle:
            pubsub.close()
        self._client.close()

    def _retry(self, operation: Callable[[], T]) -> T:
        """Run ``operation``, retrying connection errors with a doubling delay.

        Raises BackendUnavailable naming the (masked) URL once the retries are spent.
        """
        attempt = 0
        while True:
            try:
                return operation()
            except self.transient as error:
                if attempt == self._retries:
                    raise BackendUnavailable(
                        f"result backend {self.url} unreachable after {attempt + 1} attempts: "
                        f"{error}") from error
            time.sleep(self._retry_delay * 2 ** attempt)
            attempt += 1


def _split_key_prefix(url: str) -> tuple[str, str | None]:
    """Take flowq's ``key_prefix`` query parameter out of a URL meant for redis-py."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefixes = [value for name, value in query if name == "key_prefix"]
    rest = urlencode([(name, value) for name, value in query if name != "key_prefix"])
    return urlunsplit(parts._replace(query=rest)), (prefixes[-1] if prefixes else None)


@overload
def _ms(seconds: float) -> int: ...


@overload
def _ms(seconds: None) -> None: ...


def _ms(seconds: float | None) -> int | None:
    """An expiry in whole milliseconds, at least 1 (Redis rejects 0)."""
    return None if seconds is None else max(1, math.ceil(seconds * 1000))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _decode_progress(fields: dict[bytes, bytes]) -> Progress:
    """A progress hash: terminal state -> count, and ``at`` -> ms time of the last one."""
    at = fields.pop(b"at", None)
    return Progress({state.decode(): int(n) for state, n in fields.items()},
                    None if at is None else int(at) / 1000)


def _token() -> str:
    """Tells one call's writes apart from any other's, so its retries can recognise them."""
    return os.urandom(8).hex()


def _record(state: str, payload: bytes, token: str = "") -> bytes:
    return b"%s\n%s\n%s" % (state.encode(), token.encode(), payload)


def _decode_record(raw: bytes) -> Record:
    state, _, rest = raw.partition(b"\n")
    return Record(state.decode(), rest.partition(b"\n")[2])


def _encode_part(value: bytes | None) -> bytes:
    """A chord part as stored: ``v`` + value, or ``x`` for a failed member."""
    return b"x" if value is None else b"v" + value


def _decode_part(stored: bytes) -> bytes | None:
    return None if stored == b"x" else stored[1:]
