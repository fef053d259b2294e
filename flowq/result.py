"""Result handles: :class:`AsyncResult` for one task, :class:`GroupResult` for a group,
:class:`ResultSet` for results gathered by hand.

A handle holds an id and reads the result backend on demand; ``get()`` waits without
polling where the backend can notify. A chain's handle is its last step's, with
``.parent`` leading back through the earlier steps.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Generic, Literal, overload

from flowq import states
from flowq.exceptions import TaskRevokedError
from flowq.runtime.codec import exception_from_dict
from flowq.typevars import R

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.runtime.backends.base import Record, ResultBackend
    from flowq.workflow import LiveWorkflow


def _group_key(group_id: str) -> str:
    return f"group:{group_id}"


class _Handle:
    """What single and group results share: the app, the backend, the parent and the
    workflow the task belongs to."""

    id: str
    app: Flowq
    parent: Any
    _root_id: str | None
    _bound_backend: ResultBackend | None

    def _backend(self) -> ResultBackend:
        return self._bound_backend or self.app.backend

    @property
    def root_id(self) -> str:
        """The id of the workflow this task belongs to (Celery's ``root_id``): known at
        once for a handle returned by a send, else read once from the backend's index of
        sent workflows; a lone task (or a node the index does not know, such as one of a
        workflow sent from inside a task) is its own root."""
        if self._root_id is None:
            from flowq.runtime import live

            self._root_id = live.root_of(self._backend(), self.id) or self.id
        return self._root_id

    def workflow(self) -> LiveWorkflow:
        """The whole workflow this task belongs to, live (``app.workflow(self.root_id)``).

        Raises :class:`~flowq.exceptions.WorkflowNotFound` for a lone task.
        """
        return self.app.workflow(self.root_id)

    def _progress_shown(self, enabled: bool, interval: float | None) -> Any:
        """A context drawing a progress bar while ``get()`` waits (see flowq.progress):
        of the whole workflow when one is stored, else of this handle's own tasks."""
        if not enabled:
            return contextlib.nullcontext()
        from flowq import progress
        from flowq.exceptions import WorkflowNotFound
        from flowq.runtime.live import TaskProgress

        read: Callable[[], TaskProgress] | None = None
        if self._bound_backend is None:  # (an eager run's handle: no workflow is stored)
            with contextlib.suppress(WorkflowNotFound):
                read = self.workflow().progress
        if read is None:
            own = self._leaves() if isinstance(self, ResultSet) else [self]
            backend, ids = self._backend(), [task.id for task in own]

            def read() -> TaskProgress:
                return TaskProgress.of([r.state if r else None for r in backend.get_many(ids)])

        return progress.shown(read, interval=interval or progress.INTERVAL)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, type(self)) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM",
               workflow: bool = False) -> None:
        """Revoke this task (or, with ``workflow=True``, every node of its workflow)."""
        target = self.root_id if workflow else self.id
        self.app.control.revoke(target, terminate=terminate, signal=signal)

    def revoke_by_stamped_headers(self, headers: dict[str, Any], terminate: bool = False,
                                  signal: str | None = None, wait: bool = False,
                                  timeout: float | None = None) -> None:
        """Revoke every task with one of these stamps (Celery's method; the handle's own
        id plays no part): see ``app.control.revoke_by_stamped_headers``."""
        self.app.control.revoke_by_stamped_headers(headers, terminate=terminate,
                                                   signal=signal or "SIGTERM", reply=wait,
                                                   timeout=timeout or 1.0)

class AsyncResult(_Handle, Generic[R]):
    """The result of one task (or the last step of a chain).

    ``add.delay(2, 2)`` of a task returning ``int`` is an ``AsyncResult[int]``, so a type
    checker knows ``get()`` returns an ``int`` (``get(propagate=False)`` may also return the
    task's exception). ``AsyncResult(task_id)`` is an ``AsyncResult[Any]``.
    """

    def __init__(self, id: str, app: Flowq | None = None, parent: Any = None,
                 backend: ResultBackend | None = None, root_id: str | None = None):
        from flowq._state import current_app

        self.id = id
        self.app = app or current_app()
        self.parent = parent
        self._bound_backend = backend
        self._root_id = root_id
        self._record: Record | None = None

    task_id = property(lambda self: self.id)

    def _fetch(self) -> Record | None:
        if self._record is None or self._record.state not in states.READY_STATES:
            self._record = self._backend().get(self.id)
        return self._record

    def _document(self) -> dict[str, Any]:
        record = self._fetch()
        return self.app.result_codec.load(record.payload) if record else {}

    @property
    def state(self) -> str:
        record = self._fetch()
        return record.state if record else states.PENDING

    status = state

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    @property
    def result(self) -> Any:
        """The return value, or the exception for a failed task (None while pending)."""
        doc = self._document()
        if "exc" in doc:
            return exception_from_dict(doc["exc"])
        return doc.get("result")

    info = result

    @property
    def traceback(self) -> str | None:
        return self._document().get("traceback")

    @property
    def children(self) -> list[AsyncResult[Any]]:
        return [AsyncResult(c, self.app, backend=self._bound_backend)
                for c in self._document().get("children", [])]

    @overload
    def get(self, timeout: float | None = None, propagate: Literal[True] = True,
            interval: float | None = None, progress: bool = False) -> R: ...

    @overload
    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float | None = None, progress: bool = False) -> R | BaseException: ...

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float | None = None, progress: bool = False) -> Any:
        """Wait for the result and return it; re-raise the task's exception if it failed
        (return it instead with ``propagate=False``).

        With ``progress=True`` and standard error a terminal, a bar shows how many tasks
        of the workflow are done (and failed) while it waits, redrawn every ``interval``
        seconds (default 0.5). Raises :class:`flowq.exceptions.TimeoutError` after
        ``timeout`` seconds.
        """
        with self._progress_shown(progress, interval):
            (record,) = self._backend().wait([self.id], timeout)
        self._record = record
        return _value(self.app, record, propagate, self.id)

    wait = get

    def maybe_throw(self, propagate: bool = True, callback: Any = None) -> Any:
        """Without waiting: raise the task's exception if it failed (with ``propagate``),
        call ``callback(id, value)``, and return its value (None while not ready)."""
        record = self._fetch()
        value = None if record is None else _value(self.app, record, propagate, self.id)
        if callback is not None:
            callback(self.id, value)
        return value

    maybe_reraise = maybe_throw

    def forget(self) -> None:
        """Delete the stored result."""
        self._backend().forget([self.id])
        self._record = None

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"


class ResultSet:
    """Results waited on together (Celery's ``ResultSet``); it has no id of its own.

    ``ResultSet([add.delay(1, 1), add.delay(2, 2)]).get()`` is ``[2, 4]``. Members are
    kept in order; :meth:`add`, :meth:`remove`, :meth:`discard`, :meth:`update` and
    :meth:`clear` change the set (a handle, unlike a signature, is not a value).
    """

    def __init__(self, results: Sequence[Any], app: Flowq | None = None,
                 backend: ResultBackend | None = None):
        from flowq._state import current_app

        self.results = list(results)
        # the members' app (and backend) unless given: they know where they are stored
        first = self.results[0] if self.results else None
        self.app = app or getattr(first, "app", None) or current_app()
        self._bound_backend = backend or getattr(first, "_bound_backend", None)

    def _backend(self) -> ResultBackend:
        return self._bound_backend or self.app.backend

    # -- the set ---------------------------------------------------------------------------

    def add(self, result: Any) -> None:
        if result not in self.results:
            self.results.append(result)

    def remove(self, result: Any) -> None:
        """Remove ``result`` (a handle or a task id); KeyError if it is not a member."""
        if isinstance(result, str):
            result = self.app.AsyncResult(result)
        try:
            self.results.remove(result)
        except ValueError:
            raise KeyError(result) from None

    def discard(self, result: Any) -> None:
        try:
            self.remove(result)
        except KeyError:
            pass

    def update(self, results: Iterable[Any]) -> None:
        for result in results:
            self.add(result)

    def clear(self) -> None:
        self.results.clear()

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet) and not isinstance(other, GroupResult):
            return other.results == self.results
        return NotImplemented  # (defining __eq__ leaves it unhashable: it changes in place)

    # -- state -----------------------------------------------------------------------------

    def _leaves(self) -> list[AsyncResult[Any]]:
        leaves: list[AsyncResult[Any]] = []
        stack = list(reversed(self.results))
        while stack:
            handle = stack.pop()
            if isinstance(handle, ResultSet):
                stack.extend(reversed(handle.results))
            else:
                leaves.append(handle)
        return leaves

    def _records(self) -> list[Record | None]:
        return self._backend().get_many([r.id for r in self._leaves()])

    def completed_count(self) -> int:
        """How many members finished successfully."""
        return sum(1 for r in self._records() if r is not None and r.state == states.SUCCESS)

    def ready(self) -> bool:
        return all(r is not None and r.state in states.READY_STATES for r in self._records())

    def waiting(self) -> bool:
        return not self.ready()

    def successful(self) -> bool:
        return all(r is not None and r.state == states.SUCCESS for r in self._records())

    def failed(self) -> bool:
        return any(r is not None and r.state == states.FAILURE for r in self._records())

    def maybe_throw(self, propagate: bool = True, callback: Any = None) -> None:
        """Without waiting: raise the first failed member's exception (with
        ``propagate``), calling ``callback(id, value)`` for each member that is ready."""
        for leaf, record in zip(self._leaves(), self._records()):
            if record is not None:
                value = _value(self.app, record, propagate, leaf.id)
                if callback is not None:
                    callback(leaf.id, value)

    maybe_reraise = maybe_throw

    # -- waiting ---------------------------------------------------------------------------

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float | None = None, callback: Any = None) -> list[Any]:
        """Wait for every member; return their results in order (nested for nested groups).

        With ``propagate``, the first failed member's exception is raised; ``callback``
        (Celery's) is called with ``(task_id, value)`` for each member instead of
        collecting the values, and the list returned is then empty.
        """
        return self._collected(self._wait(timeout), propagate, callback)

    join = join_native = get

    def _wait(self, timeout: float | None) -> list[tuple[AsyncResult[Any], Record]]:
        leaves = self._leaves()
        return list(zip(leaves, self._backend().wait([r.id for r in leaves], timeout)))

    def _collected(self, arrived: list[tuple[AsyncResult[Any], Record]], propagate: bool,
                   callback: Any) -> list[Any]:
        values = {leaf.id: _value(self.app, record, propagate, leaf.id)
                  for leaf, record in arrived}
        if callback is not None:
            for leaf, _ in arrived:
                callback(leaf.id, values[leaf.id])
            return []
        return _shape(self.results, values)

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM") -> None:
        self.app.control.revoke([r.id for r in self._leaves()], terminate=terminate,
                                signal=signal)

    def forget(self) -> None:
        self._backend().forget([r.id for r in self._leaves()])

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id for r in self.results)}]>"


class GroupResult(_Handle, ResultSet):
    """The results of a group's members, in member order; its id is the group's."""

    def __init__(self, id: str, results: Sequence[Any], app: Flowq | None = None,
                 parent: Any = None, backend: ResultBackend | None = None,
                 joined: bool = False, root_id: str | None = None):
        super().__init__(results, app, backend)
        self.id = id
        self.parent = parent
        self._root_id = root_id
        self._joined = joined  # the group's own record is written when all members finish

    @property
    def children(self) -> list[Any]:
        return self.results

    @property
    def state(self) -> str:
        if self.failed():
            return states.FAILURE
        return states.SUCCESS if self.ready() else states.PENDING

    def get(self, timeout: float | None = None, propagate: bool = True,  # type: ignore[override]
            interval: float | None = None, progress: bool = False,
            callback: Any = None) -> list[Any]:
        """Wait for every member; return their results in order (nested for nested groups).

        With ``propagate``, the first failed member's exception is raised. ``progress``
        and ``interval`` draw a progress bar as :meth:`AsyncResult.get` does; ``callback``
        is :meth:`ResultSet.get`'s.
        """
        with self._progress_shown(progress, interval):
            if self._joined and propagate and callback is None:
                # one key to wait on: the group's own record, written when the last part
                # arrives
                (record,) = self._backend().wait([self.id], timeout)
                if record.state == states.SUCCESS:
                    joined: list[Any] = self.app.result_codec.load(record.payload)["result"]
                    return joined
            arrived = self._wait(timeout)
        return self._collected(arrived, propagate, callback)

    join = join_native = get  # type: ignore[assignment]  # get() also takes progress=

    def revoke(self, terminate: bool = False, signal: str = "SIGTERM",  # type: ignore[override]
               workflow: bool = False) -> None:
        ids = [self.root_id] if workflow else [r.id for r in self._leaves()]
        self.app.control.revoke(ids, terminate=terminate, signal=signal)

    def forget(self) -> None:
        self._backend().forget([r.id for r in self._leaves()] + [self.id])

    def save(self) -> GroupResult:
        """Store the member ids so :meth:`restore` can rebuild this handle by id."""
        doc = {"results": _describe(self.results)}
        self._backend().put_blob(_group_key(self.id), json.dumps(doc).encode(),
                                 expires=self.app.conf.result_expires)
        return self

    @classmethod
    def restore(cls, group_id: str, app: Flowq | None = None,
                backend: ResultBackend | None = None) -> GroupResult | None:
        """The group saved under ``group_id``, or None."""
        from flowq._state import current_app

        app = app or current_app()
        data = (backend or app.backend).get_blob(_group_key(group_id))
        if data is None:
            return None
        return _rebuild(group_id, json.loads(data)["results"], app, backend)

    def delete(self) -> None:
        self._backend().delete_blob(_group_key(self.id))

    def __repr__(self) -> str:
        return f"<GroupResult: {self.id} [{', '.join(r.id for r in self.results)}]>"


def _value(app: Flowq, record: Record, propagate: bool, task_id: str) -> Any:
    doc = app.result_codec.load(record.payload)
    if record.state == states.SUCCESS:
        return doc.get("result")
    error = exception_from_dict(doc.get("exc")) if "exc" in doc else TaskRevokedError(task_id)
    if record.state == states.REVOKED and not isinstance(error, TaskRevokedError):
        error = TaskRevokedError(f"task {task_id} was revoked: {error}")
    if propagate:
        remote = doc.get("traceback")
        if isinstance(remote, str) and remote:
            error.add_note("remote traceback:\n" + remote.rstrip())
        raise error
    return error


def _shape(handles: Sequence[Any], values: dict[str, Any]) -> list[Any]:
    """Values arranged like ``handles`` (nested lists for nested groups), iteratively."""
    out: list[Any] = []
    stack: list[tuple[Iterator[Any], list[Any]]] = [(iter(handles), out)]
    while stack:
        items, target = stack[-1]
        handle = next(items, None)
        if handle is None:
            stack.pop()
        elif isinstance(handle, ResultSet):
            inner: list[Any] = []
            target.append(inner)
            stack.append((iter(handle.results), inner))
        else:
            target.append(values[handle.id])
    return out


def _describe(handles: Sequence[Any]) -> list[Any]:
    return [[h.id, _describe(h.results)] if isinstance(h, GroupResult) else h.id
            for h in handles]


def _rebuild(group_id: str, described: list[Any], app: Flowq,
             backend: ResultBackend | None) -> GroupResult:
    members = [_rebuild(item[0], item[1], app, backend) if isinstance(item, list)
               else AsyncResult(item, app, backend=backend) for item in described]
    return GroupResult(group_id, members, app, backend=backend)
