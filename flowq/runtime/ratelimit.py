"""Rate limits: ``rate_limit="10/s" | "100/m" | "1000/h"`` as a token bucket per task.

The worker holds a rate-limited task back while its bucket is empty; other tasks keep
flowing. Buckets live in the worker's main process, so a limit is per worker.
"""

from __future__ import annotations

import time

from flowq.exceptions import ConfigurationError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: str | float | int | None) -> float | None:
    """Tasks per second for ``"10/s"``, ``"100/m"``, ``"1000/h"`` or a number; None = no limit."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if value > 0 else None
    if isinstance(value, str):
        count, _, unit = value.strip().partition("/")
        try:
            number = float(count)
        except ValueError:
            number = -1.0
        if number > 0 and (unit or "s") in _UNITS:
            return number / _UNITS[unit or "s"]
    raise ConfigurationError(f"rate limit {value!r} is not like '10/s', '100/m' or '1000/h'")


class TokenBucket:
    """``rate`` tokens per second, holding at most ``capacity`` (bursts)."""

    def __init__(self, rate: float, capacity: float = 1.0):
        self.rate = rate
        self.capacity = max(capacity, 1.0)
        self._tokens = self.capacity
        self._stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self) -> bool:
        """Use one token if there is one."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until the next token."""
        self._refill()
        return max(0.0, (1.0 - self._tokens) / self.rate)


class RateLimits:
    """The buckets of one worker, by task name; limits can change at run time."""

    def __init__(self) -> None:
        self._buckets: dict[str, TokenBucket | None] = {}

    def set(self, task_name: str, rate: str | float | None) -> None:
        per_second = parse_rate(rate)
        self._buckets[task_name] = TokenBucket(per_second) if per_second else None

    def allow(self, task_name: str, default: str | float | None) -> bool:
        """Whether one more ``task_name`` may start now (using a token if limited)."""
        if task_name not in self._buckets:
            self.set(task_name, default)
        bucket = self._buckets[task_name]
        return bucket is None or bucket.take()

    def limits(self) -> dict[str, float]:
        return {name: bucket.rate for name, bucket in self._buckets.items() if bucket}
