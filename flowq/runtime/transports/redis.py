"""kombu's Redis transport, with one Redis client per channel instead of one per call.

kombu builds a new ``redis.Redis`` client object for every publish and every ack
(about 50 µs each, a quarter of the worker main process's time per task). A client
object is thread-safe and cheap to share (connections come from the pool per command),
so the channel keeps one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    @cached_property
    def _shared_client(self) -> Any:
        return self._create_client()

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or self._shared_client


class Transport(kombu_redis.Transport):
    Channel = Channel
