"""A Redis counter that tasks of both systems increment, so a drain with ignored results
knows when its last task ran. ``BENCH_LEDGER=<redis url>#<key>`` names it; one connection
per process, one ``INCR`` per task (the same cost for flowq and Celery)."""

from __future__ import annotations

import functools
import os

import redis


@functools.cache
def _ledger() -> tuple[redis.Redis, str]:
    url, _, key = os.environ["BENCH_LEDGER"].partition("#")
    return redis.Redis.from_url(url), key


def tick_ledger() -> None:
    client, key = _ledger()
    client.incr(key)


def ledger_count() -> int:
    client, key = _ledger()
    return int(client.get(key) or 0)
