"""The result backend on a Redis Cluster: :class:`RedisBackend` with keys spread over slots.

A script or transaction can only touch keys of one hash slot, so what a single server does
in one step is split where the keys cannot share a slot (names from
:class:`~flowq.runtime.keys.ClusterKeys`):

* A result must be found from its task id alone (``AsyncResult(id)`` in any process), so
  it lives in its task id's slot, while a chord's state lives in its join id's slot.
  ``store`` therefore runs two scripts: ``store_record.lua`` writes the record and keeps,
  next to it, the chord part the first terminal record implies (its *intent*);
  ``store_part.lua`` then records that part in the chord. The part recorded always agrees
  with the first terminal record, even when a second call finishes the job of a first
  one that died between the two steps (a worker recording a lost child's failure after
  the child stored its success counts the success). Each step is idempotent and keyed by
  the call's token, so retries behave as on one server.
* Chords are created one script each (``chord_init.lua``), pipelined per node.
* A tracked workflow's progress lives in the tracking slot, so its count is a step of its
  own after the record's (one more round trip per transition of a tracked workflow): a
  crash between the two leaves that node uncounted, and a count retried after a lost reply
  may count it twice. The counts are for display; nothing advances by them. Resume's
  ``reset`` likewise deletes each record in its slot (``take_record.lua``), then uncounts
  what it deleted, and ``chord_reset`` replaces each chord in a transaction of its own.
* The delay index and its payloads share one tag per prefix (one slot per deployment);
  revocations are one sorted set; flags, counters, blobs and leases are single keys.
* Wake-ups for :meth:`wait` use classic pub/sub, which a cluster broadcasts to every
  node: one subscriber connection per wait, on any node, hears every result, wherever
  its key lives, and keeps hearing through a resharding (sharded pub/sub would need a
  connection per master and re-subscriptions whenever a slot moves).
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import redis
from redis.cluster import RedisCluster

from flowq import states
from flowq.exceptions import ConfigurationError
from flowq.runtime import cluster_url
from flowq.runtime.backends.base import ChordPart, StoreOutcome, chunked
from flowq.runtime.backends.redis import (  # the single server's record encoding, shared
    _BATCH,
    _TERMINAL,
    SOURCES,
    RedisBackend,
    _encode_part,
    _ms,
    _now_ms,
    _record,
    _token,
)
from flowq.runtime.keys import ClusterKeys, Keys


class RedisClusterBackend(RedisBackend):
    """Result backend on a Redis Cluster.

    ``url``: ``redis-cluster://[:password@]host:port[,host:port...]`` (``rediss-cluster://``
    for TLS; see :mod:`flowq.runtime.cluster_url`), with an optional ``key_prefix`` query
    parameter; the other arguments are :class:`RedisBackend`'s. The client connects on
    first use, so an unreachable cluster surfaces as BackendUnavailable after the retries.
    """

    transient = cluster_url.transient_errors()
    keys: ClusterKeys

    def _keys(self, prefix: str) -> Keys:
        return ClusterKeys(cluster_url.check_prefix(prefix))

    def _open(self, server_url: str, redis_options: dict[str, Any]) -> None:
        self._address = cluster_url.parse_cluster_url(server_url)
        self._redis_options = redis_options
        self._connect_lock = threading.Lock()

    @functools.cached_property
    def _client(self) -> RedisCluster:  # type: ignore[override]
        # redis-py's cluster retries stay on: they follow MOVED replies and failovers.
        with self._connect_lock:
            try:
                return cluster_url.connect(self._address, **self._redis_options)
            except redis.exceptions.RedisClusterException as error:
                if isinstance(error.__cause__, self.transient):  # no seed answered
                    raise redis.ConnectionError(str(error)) from error
                raise ConfigurationError(f"result backend {self.url}: {error}") from error

    @functools.cached_property
    def _scripts(self) -> dict[str, Any]:  # type: ignore[override]
        return {name: self._client.register_script(source) for name, source in SOURCES.items()}

    # -- results ----------------------------------------------------------------------------

    def store(self, task_id: str, state: str, payload: bytes, *,
              part: ChordPart | None = None, expires: float | None = None,
              tracked: str | None = None) -> StoreOutcome:
        token = _token()  # the same for every retry of this call, in both steps
        keys = [self.keys.result(task_id)]
        args: list[Any] = [_record(state, payload, token), token, _ms(expires) or "",
                           self.keys.channel(task_id), _TERMINAL]
        if part is not None:
            keys.append(self.keys.part_intent(task_id))
            args.append(_encode_part(part.value))
        new, recorded_part, written = self._retry(
            lambda: self._scripts["store_record"](keys, args))
        if written and tracked is not None:
            self._count(tracked, Counter({state: 1}), expires)
        if part is None:
            return StoreOutcome(new=bool(new))
        part_args = [token, _ms(expires) or "", part.index, recorded_part,
                     part.claimant]
        first_failure, lost, joined, *values = self._retry(lambda: self._scripts["store_part"](
            [self.keys.chord(part.join_id)], part_args))
        return StoreOutcome(new=bool(new), joined=tuple(values) if joined else None,
                            first_failure=bool(first_failure), lost=bool(lost))

    def store_many(self, records: Sequence[tuple[str, str, bytes]],
                   expires: float | None = None, tracked: str | None = None) -> None:
        calls = [([self.keys.result(task_id)], [_record(state, payload),
                                                _ms(expires) or "",
                                                self.keys.channel(task_id), state])
                 for task_id, state, payload in records]
        written = self._retry(functools.partial(self._pipelined, "store_absent", calls))
        if tracked is not None:
            self._count(tracked, Counter(state for (_, state, _), wrote
                                         in zip(records, written, strict=True) if wrote),
                        expires)

    def _count(self, tracked: str, written: Counter[str], expires: float | None,
               touch: bool = False) -> None:
        """Add ``written`` (nodes per state, negative to uncount) to the progress of
        ``tracked``; with ``touch``, mark it changed even when nothing is added."""
        if not written and not touch:
            return
        key = self.keys.workflow_progress(tracked)

        def count() -> None:
            pipe = self._client.pipeline(transaction=True)  # one slot: the tracking tag
            for state, n in written.items():
                pipe.hincrby(key, state, n)
            pipe.hset(key, "at", _now_ms())
            if expires is not None:
                pipe.pexpire(key, _ms(expires))
            pipe.execute()

        self._retry(count)

    def _mget(self, keys: list[str]) -> list[bytes | None]:
        # one MGET per slot, pipelined per node
        return cast("list[bytes | None]", self._client.mget_nonatomic(keys))

    def forget(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        keys = [self.keys.result(i) for i in ids] + [self.keys.part_intent(i) for i in ids]
        for batch in chunked(keys, _BATCH):
            self._retry(functools.partial(self._client.delete, *batch))

    # -- chords -----------------------------------------------------------------------------

    def chord_init(self, joins: Sequence[tuple[str, int]], expires: float | None = None) -> None:
        calls = [([self.keys.chord(join_id)], [size, _ms(expires) or ""])
                 for join_id, size in joins]
        self._retry(functools.partial(self._pipelined, "chord_init", calls))

    def chord_reset(self, joins: Sequence[tuple[str, int, Mapping[int, bytes]]],
                    expires: float | None = None) -> None:
        for join_id, size, parts in joins:
            key = self.keys.chord(join_id)

            def replace(key: str = key, size: int = size, parts: Mapping[int, bytes] = parts
                        ) -> None:
                pipe = self._client.pipeline(transaction=True)  # one key: one slot
                pipe.delete(key)
                pipe.hset(key, mapping={"size": size, "n": len(parts),
                                        **{str(i): _encode_part(v) for i, v in parts.items()}})
                if expires is not None:
                    pipe.pexpire(key, _ms(expires))
                pipe.execute()

            self._retry(replace)

    def reset(self, counted: Sequence[str], *, tracked: str | None = None,
              uncounted: Sequence[str] = (), flags: Sequence[str] = (),
              counters: Sequence[str] = ()) -> None:
        calls: list[tuple[list[str], list[Any]]] = [
            ([self.keys.result(task_id), self.keys.part_intent(task_id)], [])
            for task_id in counted]
        taken = self._retry(functools.partial(self._pipelined, "take_record", calls))
        if tracked is not None:
            gone = Counter(state.decode() for state in taken
                           if state and state.decode() in states.READY_STATES)
            self._count(tracked, Counter({state: -n for state, n in gone.items()}), None,
                        touch=True)
        self.forget(uncounted)
        others = [*(self.keys.flag(key) for key in flags),
                  *(self.keys.counter(key) for key in counters)]
        for batch in chunked(others, _BATCH):
            self._retry(functools.partial(self._client.delete, *batch))

    def close(self) -> None:
        if "_client" in self.__dict__:  # never connect just to close
            super().close()

    # -- helpers ----------------------------------------------------------------------------

    def _pipelined(self, name: str, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run script ``name`` once per ``(keys, args)`` in ``calls``, pipelined per node.

        A node that does not know the script yet (new, or failed over) answers NOSCRIPT
        without running it: the script is loaded on every master and those calls redone.
        """
        script = self._scripts[name]
        results: list[Any] = []
        for batch in chunked(calls, _BATCH):
            answers = self._evalsha_all(script.sha, batch)
            missing = [i for i, answer in enumerate(answers)
                       if isinstance(answer, redis.exceptions.NoScriptError)]
            if missing:
                self._client.script_load(script.script)
                for i, answer in zip(missing, self._evalsha_all(
                        script.sha, [batch[i] for i in missing]), strict=True):
                    answers[i] = answer
            for answer in answers:
                if isinstance(answer, Exception):
                    raise answer
            results += answers
        return results

    def _evalsha_all(self, sha: str, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        pipe = self._client.pipeline()
        for keys, args in calls:
            # execute_command: ClusterPipeline blocks its evalsha() method, not the command
            pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
        return cast("list[Any]", pipe.execute(raise_on_error=False))
