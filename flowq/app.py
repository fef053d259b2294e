"""The application: settings, the task registry, and sending workflows.

::

    app = Flowq("proj", broker="redis://127.0.0.1:6379/0", backend="redis://127.0.0.1:6379/0")

    @app.task
    def add(x, y):
        return x + y

    (add.s(2, 2) | add.s(4)).delay().get(timeout=10)   # 8

With no broker or backend configured (and no ``FLOWQ_BROKER_URL`` /
``FLOWQ_RESULT_BACKEND``), an embedded default keeps both in SQLite files under
``.flowq/`` beside the file that defines the app (``data_dir``, ``FLOWQ_DATA_DIR``):
no server needed, and every process using the app finds the same files, whatever its
working directory.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Concatenate, Literal, overload

from flowq import _state
from flowq.canvas.dag import Workflow, compile_workflow
from flowq.canvas.signature import Canvas, Signature
from flowq.canvas.validate import unknown_task_message, validate
from flowq.discovery import Packages, import_task_modules
from flowq.exceptions import InvalidWorkflow
from flowq.result import AsyncResult, GroupResult
from flowq.runtime.codec import ResultCodec, accepted_types
from flowq.settings import Settings
from flowq.shared import register_shared_tasks
from flowq.task import Task, current_request
from flowq.typevars import P, R


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def defining_directory() -> str:
    """The directory of the file whose code is creating an app: the first caller outside
    flowq's own files, so an app made by a helper of ours belongs to the caller's file.
    The working directory when there is no such file (``python -c``, a REPL, a notebook)."""
    frame = sys._getframe(1)
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(
            _PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
    path = frame.f_globals.get("__file__") if frame is not None else None
    if not path:
        return os.getcwd()
    return os.path.dirname(os.path.realpath(path))

if TYPE_CHECKING:
    from flowq.workflow import LiveWorkflow


class _GroupResults:
    """``app.GroupResult``: build a group handle, or ``restore(id)`` a saved one."""

    def __init__(self, app: Flowq):
        self.app = app

    def __call__(self, id: str, results: Iterable[Any], **kwargs: Any) -> GroupResult:
        return GroupResult(id, list(results), app=self.app, **kwargs)

    def restore(self, group_id: str) -> GroupResult | None:
        return GroupResult.restore(group_id, app=self.app)


class Flowq:
    """A flowq application: configuration plus the tasks registered on it."""

    def __init__(self, main: str | None = None, broker: str | None = None,
                 backend: str | None = None, **settings: Any):
        self.main = main
        self.conf = Settings(**settings)
        self.conf.base_dir = defining_directory()
        if broker is not None:
            self.conf.broker_url = broker
        if backend is not None:
            self.conf.result_backend = backend
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.task_options: set[str] = set()
        self._runtime: Any = None
        self._runtime_pid: int | None = None
        self._lock = threading.Lock()
        self._discoveries: list[tuple[Packages, str | None]] = []
        _state.set_current_app(self)
        from flowq.runtime import builtins

        builtins.register(self)
        register_shared_tasks(self)

    # -- configuration ------------------------------------------------------------------

    def config_from_object(self, obj: Any, namespace: str | None = None) -> None:
        """Load settings from a module, an object, a dict, or an import path to one of them
        (``"proj.settings"``, ``"django.conf:settings"``).

        Lower-case attributes are settings (Celery's names); with ``namespace="FLOWQ"``,
        upper-case ``FLOWQ_BROKER_URL``-style names are read instead (Django's way).
        """
        if isinstance(obj, str):
            module, _, attribute = obj.partition(":")
            obj = importlib.import_module(module)
            for part in filter(None, attribute.split(".")):
                obj = getattr(obj, part)
        items = obj.items() if isinstance(obj, Mapping) else (
            (name, getattr(obj, name)) for name in dir(obj) if not name.startswith("_"))
        for name, value in items:
            if namespace:
                prefix = namespace.upper() + "_"
                if not name.startswith(prefix):
                    continue
                name = name[len(prefix):].lower()
            elif not name.islower():
                continue
            if callable(value) and not isinstance(value, type) and name != "task_routes":
                continue  # helper functions in a config module are not settings
            self.conf[name] = value
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._runtime = None
        self.__dict__.pop("result_codec", None)
        self.__dict__.pop("accepted_content", None)

    # -- tasks --------------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, *, bind: Literal[True], name: str | None = None,
             **options: Any) -> Callable[[Callable[Concatenate[Any, P], R]], Task[P, R]]: ...

    @overload
    def task(self, *, bind: Literal[False] = False, name: str | None = None,
             **options: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    @overload
    def task(self, *, bind: bool, name: str | None = None,
             **options: Any) -> Callable[[Callable[..., R]], Task[..., R]]: ...

    def task(self, fn: Any = None, *, name: str | None = None, bind: bool = False,
             **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(bind=True, ...)``.

        The default name is ``module.function``, as in Celery; for a script run as
        ``__main__`` the app's main name stands in for the module, so the script and a
        worker importing it agree on names. Unknown options fail here, naming the option.
        The task is a ``Task[P, R]`` for a type checker: the function's parameters (less
        ``self`` with ``bind=True``) and return type.
        """
        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            module = func.__module__
            if module == "__main__" and self.main:
                module = self.main
            task_name = name or f"{module}.{func.__name__}"
            task: Task[Any, Any] = Task(self, func, task_name, bind=bind, options=options,
                                        known_options=self.task_options)
            self.tasks[task_name] = task
            return task

        return register(fn) if fn is not None else register

    def autodiscover_tasks(self, packages: Packages = None, related_name: str | None = "tasks",
                           force: bool = False) -> None:
        """Import ``<package>.tasks`` of each package so their tasks register (Celery's).

        ``packages`` is a list of package names, a callable returning one (evaluated
        late), or None for the installed apps of the Django project. The imports happen
        when the app is finalized (:meth:`finalize`: a worker and the ``flowq`` commands
        do it when they start), so a Django project's app module can call this before
        Django is set up; ``force=True`` imports now.
        """
        if force:
            import_task_modules(packages, related_name)
        else:
            self._discoveries.append((packages, related_name))

    def finalize(self) -> None:
        """Import the task modules :meth:`autodiscover_tasks` deferred, once; after this
        ``app.tasks`` holds every task. Workers and the CLI call it when they start."""
        while self._discoveries:
            packages, related_name = self._discoveries.pop(0)
            import_task_modules(packages, related_name)

    def unknown_task_message(self, name: str) -> str:
        return unknown_task_message(name, self.tasks) + (
            f"; known tasks: {', '.join(sorted(self.tasks)[:10])}" if self.tasks else "")

    def track_started(self, task: Task[Any, Any]) -> bool:
        flag = task.track_started
        return self.conf.task_track_started if flag is None else bool(flag)

    def acks_late(self, task: Task[Any, Any] | None) -> bool:
        flag = None if task is None else task.acks_late
        return self.conf.task_acks_late if flag is None else bool(flag)

    # -- per-process runtime ----------------------------------------------------------------

    @property
    def runtime(self) -> Any:
        """Connections of this process (rebuilt in a forked child)."""
        pid = os.getpid()
        if self._runtime is None or self._runtime_pid != pid:
            with self._lock:
                if self._runtime is None or self._runtime_pid != pid:
                    from flowq.runtime.runtime import Runtime

                    self._runtime = Runtime(self)
                    self._runtime_pid = pid
        return self._runtime

    @property
    def backend(self) -> Any:
        return self.runtime.backend

    @cached_property
    def result_codec(self) -> ResultCodec:
        accept = self.conf.result_accept_content or self.conf.accept_content
        return ResultCodec(self.conf.result_serializer, accept)

    @cached_property
    def accepted_content(self) -> set[str]:
        return accepted_types(self.conf.accept_content)

    # -- workflows ------------------------------------------------------------------------

    def compile(self, canvas: Canvas, args: Iterable[Any] | None = None,
                kwargs: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                strict: bool = False, seed: str | None = None) -> Workflow:
        """Compile and check ``canvas``; raise InvalidWorkflow naming every bad node.

        ``strict`` also rejects task names this app does not know; ``seed`` is the id
        the workflow's ids derive from (a fresh one by default).
        """
        on_header = self.conf.task_allow_error_cb_on_chord_header
        workflow = compile_workflow(canvas, args, kwargs, options, seed=seed,
                                    errbacks_on_chord_header=on_header)
        problems = validate(workflow, self.tasks.get, self.tasks if strict else None)
        if problems:
            raise InvalidWorkflow(problems)
        return workflow

    def validate(self, canvas: Canvas, args: Iterable[Any] | None = None,
                 kwargs: Mapping[str, Any] | None = None, **options: Any) -> Workflow:
        """Check ``canvas`` against the registered tasks without sending anything."""
        return self.compile(canvas, args, kwargs, options, strict=True)

    def send(self, canvas: Canvas, args: Iterable[Any] | None = None,
             kwargs: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """Send a workflow (any canvas) and return the handle of its result."""
        if self.conf.task_always_eager:
            return self.apply(canvas, args, kwargs, **options)
        workflow = self.compile(canvas, args, kwargs, canvas.frozen_options(options),
                                seed=canvas.frozen_seed)
        caller = current_request()
        root_id = caller.root_id if caller and caller.root_id else workflow.seed
        runtime = self.runtime
        carried = runtime.workflows.carry(workflow)
        if caller is None:  # a new root: listed, and findable by any of its ids
            from flowq.runtime import live, tracking

            tracking.track(runtime.backend, carried, root_id, time.time(),
                           self.conf.result_expires, self.conf.workflow_index_size)
            if carried.headers:  # not a lone task (its own root, with nothing to draw)
                live.index_nodes(runtime.backend, workflow, root_id, self.conf.result_expires)
        runtime.advancer.start(carried, root_id, caller.id if caller else None)
        return self.result_for(workflow, root_id=root_id)

    def apply(self, canvas: Canvas, args: Iterable[Any] | None = None,
              kwargs: Mapping[str, Any] | None = None, throw: bool | None = None,
              **options: Any) -> Any:
        """Run a workflow in this process (eagerly) and return its result handle.

        ``throw`` re-raises the workflow's exception (default: the
        ``task_eager_propagates`` setting), as Celery's ``apply(throw=...)`` does.
        """
        from flowq.runtime.eager import run_eagerly

        propagate = self.conf.task_eager_propagates if throw is None else throw
        workflow = self.compile(canvas, args, kwargs, canvas.frozen_options(options),
                                seed=canvas.frozen_seed)
        return run_eagerly(self, workflow, propagate)

    def send_task(self, name: str, args: Iterable[Any] | None = None,
                  kwargs: Mapping[str, Any] | None = None, **options: Any) -> AsyncResult:
        """Send a task by name; the producer need not have it registered."""
        return self.send(Signature(name, tuple(args or ()), kwargs or {}, bound_app=self),
                         **options)

    def signature(self, name: str, args: Iterable[Any] = (),
                  kwargs: Mapping[str, Any] | None = None, **options: Any) -> Signature:
        return Signature(name, tuple(args), kwargs or {}, options, bound_app=self)

    def result_for(self, workflow: Workflow, backend: Any = None,
                   root_id: str | None = None) -> Any:
        """The handle of ``workflow``'s result, with ``.parent`` links back to its start;
        every handle's ``root_id`` is ``root_id`` (default: the workflow's first node)."""
        root_id = root_id or workflow.seed
        handles: list[Any] = []
        for position, node in enumerate(workflow.nodes):
            task_id = workflow.node_id(position)
            if node.members:  # a group's parent is what its members follow (Celery's too)
                members = [handles[m] for m in node.members]
                handles.append(GroupResult(task_id, members, self, parent=members[0].parent,
                                           backend=backend, joined=True, root_id=root_id))
            elif node.kind == "join":
                handles.append(GroupResult(task_id, [], self, backend=backend, joined=True,
                                           root_id=root_id))
            else:
                parent = handles[node.input] if node.input is not None else None
                handles.append(AsyncResult(task_id, self, parent, backend, root_id=root_id))
        return handles[workflow.output]

    def workflow(self, task_id: str) -> LiveWorkflow:
        """The sent workflow that the task ``task_id`` belongs to (any node's id works):
        its live graph, progress and state.

        Raises :class:`~flowq.exceptions.WorkflowNotFound` when no workflow is stored for
        the id (a lone task, one sent from inside a task, an unknown or expired id).
        """
        from flowq.workflow import LiveWorkflow

        return LiveWorkflow.find(self, task_id)

    def AsyncResult(self, task_id: str, **kwargs: Any) -> AsyncResult:  # noqa: N802
        return AsyncResult(task_id, app=self, **kwargs)

    @cached_property
    def GroupResult(self) -> _GroupResults:  # noqa: N802 - Celery's name
        return _GroupResults(self)

    @cached_property
    def control(self) -> Any:
        from flowq.runtime.control import Control

        return Control(self)

    def close(self) -> None:
        if self._runtime is not None and self._runtime_pid == os.getpid():
            self._runtime.close()
        self._runtime = None

    def __repr__(self) -> str:
        return f"<Flowq {self.main or '__main__'}: {len(self.tasks)} tasks>"
