"""Which queue a task goes to: call options, then ``task_routes``, then the default.

``task_routes`` is a dict of task-name glob -> queue (or ``{"queue": name}``), a list of
such dicts or callables, or a callable ``(name, args, kwargs, options) -> queue|dict|None``
(Celery's router signature is accepted too).
"""

from __future__ import annotations

import fnmatch
import functools
from collections.abc import Callable, Mapping
from typing import Any

from flowq.exceptions import ConfigurationError

Route = Callable[[str], "str | None"]


def _queue_of(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        queue = value.get("queue")
        return queue if isinstance(queue, str) else None
    raise ConfigurationError(f"a task route must give a queue name or {{'queue': name}}, "
                             f"got {value!r}")


class Router:
    """Resolves a task name to a queue; results are cached per task name."""

    def __init__(self, routes: Any, default_queue: str):
        self.routes = routes
        self.default_queue = default_queue
        self._rules = self._compile(routes)
        self._cache: dict[str, str | None] = {}

    @staticmethod
    def _compile(routes: Any) -> list[Callable[[str], Any]]:
        if routes is None:
            return []
        if isinstance(routes, Mapping) or callable(routes):
            routes = [routes]
        rules: list[Callable[[str], Any]] = []
        for route in routes:
            if isinstance(route, Mapping):
                rules.append(_glob_rule(list(route.items())))
            elif callable(route):
                rules.append(functools.partial(_call_router, route))
            else:
                raise ConfigurationError(f"task_routes entries must be dicts or callables, "
                                         f"got {route!r}")
        return rules

    def queue_for(self, task_name: str, options: Mapping[str, Any]) -> str:
        """The queue for one invocation of ``task_name`` with call ``options``."""
        explicit = options.get("queue")
        if explicit:
            return str(explicit)
        if task_name not in self._cache:
            self._cache[task_name] = next(
                (q for q in (_queue_of(rule(task_name)) for rule in self._rules) if q), None)
        return self._cache[task_name] or self.default_queue


def _glob_rule(patterns: list[tuple[str, Any]]) -> Callable[[str], Any]:
    def rule(name: str) -> Any:
        return next((queue for glob, queue in patterns if fnmatch.fnmatchcase(name, glob)), None)

    return rule


def _call_router(router: Callable[..., Any], name: str) -> Any:
    try:
        return router(name, (), {}, {})
    except TypeError:
        return router(name)
