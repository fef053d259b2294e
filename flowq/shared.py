"""Shared tasks: declared once without an app, registered on every app (Celery's
``shared_task``), for reusable packages and Django apps that must not import the
project's app.

::

    # billing/tasks.py, in a package any project can use
    from flowq import shared_task

    @shared_task(max_retries=5)
    def charge(invoice_id: int) -> str: ...

``charge`` is registered on every app that exists when it is declared and on every app
created afterwards, under the same name (``billing.tasks.charge``). Calling, ``delay``,
``s`` and the rest go to the task of the *current* app (the last one created, or the one
made current in this thread), as Celery's proxies do.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Literal, overload

from flowq.typevars import P, R

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.task import Task


class _Declaration:
    """One ``@shared_task``: the function, its decorator arguments, and its task per app."""

    def __init__(self, fn: Callable[..., Any], options: dict[str, Any]):
        self.fn = fn
        self.options = options
        self.tasks: weakref.WeakKeyDictionary[Flowq, Task[Any, Any]] = (
            weakref.WeakKeyDictionary())

    def register(self, app: Flowq) -> None:
        if app not in self.tasks:
            self.tasks[app] = app.task(**self.options)(self.fn)


_lock = threading.Lock()
_declarations: list[_Declaration] = []
_apps: weakref.WeakSet[Flowq] = weakref.WeakSet()


def register_shared_tasks(app: Flowq) -> None:
    """Give a new app every shared task declared so far (and those declared later)."""
    with _lock:
        _apps.add(app)
        declarations = list(_declarations)
    for declaration in declarations:
        declaration.register(app)


class SharedTask:
    """Stands for a shared task: attribute access and calls go to the current app's task."""

    def __init__(self, declaration: _Declaration):
        self._declaration = declaration

    @property
    def _task(self) -> Task[Any, Any]:
        from flowq._state import current_app

        return self._declaration.tasks[current_app()]  # every app registers on creation

    def _get_current_object(self) -> Task[Any, Any]:
        """The current app's task itself (Celery's proxies' name; signals connected with
        ``sender=`` a shared task listen to this)."""
        return self._task

    def __getattr__(self, name: str) -> Any:
        return getattr(self._task, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._task(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<@shared_task: {self._declaration.fn.__module__}.{self._declaration.fn.__name__}>"


@overload
def shared_task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def shared_task(*, bind: Literal[True], name: str | None = None,
                **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...


@overload
def shared_task(*, bind: Literal[False] = False, name: str | None = None,
                **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...


@overload
def shared_task(*, bind: bool, name: str | None = None,
                **options: Any) -> Callable[[Callable[..., R]], Task[..., R]]: ...


def shared_task(fn: Any = None, *, bind: bool = False, name: str | None = None,
                **options: Any) -> Any:
    """Declare a task for every app: ``@shared_task`` or ``@shared_task(bind=True, ...)``,
    with the options of ``@app.task``. Typed like ``@app.task`` (a ``Task[P, R]``)."""
    def declare(func: Callable[..., Any]) -> Any:
        declaration = _Declaration(func, {"bind": bind, "name": name, **options})
        with _lock:
            _declarations.append(declaration)
            apps = list(_apps)
        for app in apps:  # an unknown option fails here, on the first app
            declaration.register(app)
        return SharedTask(declaration)

    return declare(fn) if fn is not None else declare
