"""Upgrade without loss: move what kombu's Redis list transport left into flowq's streams.

flowq's Redis broker used kombu's list transport before it had its own. Messages that
transport left behind wait in lists (``<queue>``, ``<queue>\\x06\\x16<step>`` per priority
step) and, if their consumer died or was upgraded with them in hand, in kombu's ``unacked``
hash. The new transport looks for them when it declares a queue and then now and then
(old producers may still be running during a rolling upgrade) and moves each one into the
queue's streams, atomically and unchanged. An unacked one moves once it is older than the
lease (its consumer of the old version had that long to finish it) and counts as
redelivered.

Standalone Redis only: kombu's keys carry no hash tag, so a Redis Cluster never had them.
"""

from __future__ import annotations

import logging
import time
from importlib import resources
from typing import Any, cast

import redis
from kombu.utils.json import dumps, loads

from flowq.runtime.keys import PRIORITY_LEVELS, BrokerKeys, KombuListKeys

log = logging.getLogger("flowq.broker")

_LUA = resources.files(__package__).joinpath("lua")
#: Messages moved per script call (each call blocks Redis while it runs).
BATCH = 1000


class KombuLeftovers:
    """Finds and moves kombu's leftovers for queues of one Redis database."""

    def __init__(self, client: redis.Redis, keys: BrokerKeys):
        self.client = client
        self.keys = keys
        self.kombu = KombuListKeys()
        self._lists = client.register_script(_LUA.joinpath("legacy_lists.lua").read_text())
        self._unacked = client.register_script(
            _LUA.joinpath("legacy_unacked.lua").read_text())

    def drain(self, queue: str, lease_seconds: float) -> int:
        """Move ``queue``'s leftovers; return how many moved (one command when none)."""
        old = self.kombu.queues(queue)
        if not self.client.exists(*old, self.kombu.unacked_index):
            return 0
        moved = 0
        while True:
            count = int(self._lists([*old, *self.keys.streams(queue)], [BATCH]))
            moved += count
            if count < BATCH:
                break
        moved += self._restore_unacked(queue, time.time() - lease_seconds)
        if moved:
            log.warning("Moved %d message(s) of queue %s from the earlier Redis layout "
                        "(kombu's lists) into its streams", moved, queue)
        return moved

    def _restore_unacked(self, queue: str, before: float) -> int:
        """Move kombu's unacked records for ``queue`` delivered before ``before``."""
        moved = 0
        start = 0
        while True:
            tags = cast(list[bytes], self.client.zrangebyscore(
                self.kombu.unacked_index, "-inf", before, start=start, num=BATCH))
            if not tags:
                return moved
            kept = len(tags)  # moved records leave the index: the next page starts earlier
            records = cast(list[bytes | None], self.client.hmget(self.kombu.unacked, tags))
            for tag, record in zip(tags, records):
                target = None if record is None else _target(record, queue)
                if record is None or target is None:
                    continue
                priority, message = target
                done = int(self._unacked(
                    [self.kombu.unacked, self.kombu.unacked_index,
                     self.keys.stream(queue, priority)], [tag, record, message]))
                moved += done
                kept -= done
            if len(tags) < BATCH:
                return moved
            start += kept


def _target(record: bytes, queue: str) -> tuple[int, str] | None:
    """(priority, message JSON marked redelivered) if ``record`` is one of ``queue``'s."""
    try:
        message, exchange, routing_key = loads(record)
        properties = message["properties"]
    except (ValueError, TypeError, KeyError):
        return None  # not ours to judge: another version's or another queue's record
    if queue not in (routing_key, exchange):
        return None
    try:
        step = min(max(int(properties.get("priority") or 0), 0), PRIORITY_LEVELS - 1)
    except (TypeError, ValueError):
        step = 0
    if isinstance(message.get("headers"), dict):
        message["headers"]["redelivered"] = True
    info: Any = properties.setdefault("delivery_info", {})
    if isinstance(info, dict):
        info["redelivered"] = True
    # kombu ran step 0 first: it is flowq's priority 9
    return PRIORITY_LEVELS - 1 - step, str(dumps(message))
