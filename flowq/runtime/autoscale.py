"""``flowq worker --autoscale MAX,MIN``: grow the pool with load, shrink it when idle.

Celery's rule. The pool starts with MIN processes. Once a second the worker counts its
load: the tasks it runs plus those it has taken from the broker and waits to start
(rate-limited ones excepted: more processes would not start them sooner). With more
load than processes the pool grows at once, to the load or MAX; with less it shrinks to
the load or MIN, but only once ``keepalive`` seconds (``worker_autoscale_keepalive``,
default 30) have passed since it last grew, so that a burst does not make the pool
fork and kill processes back and forth. The prefetch window is sized for MAX
processes, so that the load can show that more are needed.
"""

from __future__ import annotations

import attrs

from flowq.exceptions import ConfigurationError


@attrs.define
class Autoscaler:
    """The bounds of an autoscaled pool and when it last grew."""

    max: int
    min: int
    keepalive: float
    last_grown: float | None = None

    def __attrs_post_init__(self) -> None:
        check_bounds(self.max, self.min)

    def target(self, load: int, size: int, now: float) -> int:
        """The pool size to move to from ``size`` under ``load`` at time ``now``."""
        grown = min(load, self.max)
        if grown > size:
            self.last_grown = now
            return grown
        shrunk = max(load, self.min)
        if shrunk < size and (self.last_grown is None or now - self.last_grown >= self.keepalive):
            return shrunk
        return size

    def update(self, max: int, min: int) -> None:
        """New bounds (``control autoscale``); the pool follows at the next check."""
        check_bounds(max, min)
        self.max, self.min = max, min

    def clamp(self, size: int) -> int:
        """``size`` moved into the bounds."""
        return sorted((self.min, size, self.max))[1]

    def info(self) -> dict[str, float]:
        return {"max": self.max, "min": self.min, "keepalive": self.keepalive}


def check_bounds(max: int, min: int) -> None:
    if min < 1:
        raise ConfigurationError(f"autoscale MIN is {min}: a flowq pool always keeps at least "
                                 f"one process, so MIN must be 1 or more")
    if max < min:
        raise ConfigurationError(f"autoscale MAX ({max}) is less than MIN ({min})")
