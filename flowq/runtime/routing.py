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


Rule = Callable[[str, tuple, dict, Mapping[str, Any]], Any]


class Router:
    """Resolves a task invocation to a queue. With only glob routes the answer depends
    on the task name alone and is cached per name; callable routes see every call."""

    def __init__(self, routes: Any, default_queue: str):
        self.routes = routes
        self.default_queue = default_queue
        self._rules, self._by_name_only = self._compile(routes)
        self._cache: dict[str, str | None] = {}

    @staticmethod
    def _compile(routes: Any) -> tuple[list[Rule], bool]:
        if routes is None:
            return [], True
        if isinstance(routes, Mapping) or callable(routes):
            routes = [routes]
        rules: list[Rule] = []
        by_name_only = True
        for route in routes:
            if isinstance(route, Mapping):
                rules.append(_glob_rule(list(route.items())))
            elif callable(route):
                rules.append(functools.partial(_call_router, route))
                by_name_only = False
            else:
                raise ConfigurationError(f"task_routes entries must be dicts or callables, "
                                         f"got {route!r}")
        return rules, by_name_only

    def queue_for(self, task_name: str, args: tuple = (), kwargs: dict | None = None,
                  options: Mapping[str, Any] | None = None) -> str:
        """The queue for one invocation of ``task_name`` with these arguments and call
        ``options``: an explicit ``queue`` option wins, then the first route that answers."""
        options = options or {}
        explicit = options.get("queue")
        if explicit:
            return str(explicit)
        if not self._by_name_only:
            return self._resolve(task_name, args, kwargs or {}, options) or self.default_queue
        if task_name not in self._cache:
            self._cache[task_name] = self._resolve(task_name, (), {}, {})
        return self._cache[task_name] or self.default_queue

    def _resolve(self, task_name: str, args: tuple, kwargs: dict,
                 options: Mapping[str, Any]) -> str | None:
        return next((q for q in (_queue_of(rule(task_name, args, kwargs, options))
                                 for rule in self._rules) if q), None)


def _glob_rule(patterns: list[tuple[str, Any]]) -> Rule:
    def rule(name: str, args: tuple, kwargs: dict, options: Mapping[str, Any]) -> Any:
        return next((queue for glob, queue in patterns if fnmatch.fnmatchcase(name, glob)), None)

    return rule


def _call_router(router: Callable[..., Any], name: str, args: tuple, kwargs: dict,
                 options: Mapping[str, Any]) -> Any:
    """Call a user router with Celery's signature, or with the name alone if it takes one."""
    try:
        return router(name, args, kwargs, dict(options))
    except TypeError:
        return router(name)
