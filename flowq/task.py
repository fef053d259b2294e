"""Tasks: plain functions registered with an app, callable locally or by message.

``@app.task`` returns a :class:`Task`. Calling it runs the function here; ``.s()``
makes a signature for workflows; ``.delay()`` sends it to the workers. With
``bind=True`` the function receives the task itself first, for ``self.request`` and
``self.retry()``.
"""

from __future__ import annotations

import functools
import inspect
import random
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Unpack

import attrs

from flowq import states
from flowq.canvas.options import CallOptions
from flowq.canvas.signature import Signature
from flowq.exceptions import (
    ConfigurationError,
    InvalidWorkflow,
    InvalidState,
    MaxRetriesExceededError,
    Replace,
    Retry,
)
from flowq.typevars import P, R

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.result import AsyncResult
    from flowq.result import AsyncResult as PartResult  # (Task.AsyncResult shadows the name)
    from flowq.runtime.message import Request

@attrs.define(slots=True)
class Context:
    """What a running task knows about its own invocation (``self.request``)."""

    id: str | None = None
    task: str | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group: str | None = None
    group_index: int | None = None
    retries: int = 0
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = attrs.Factory(dict)
    eta: float | None = None
    expires: float | None = None
    hostname: str | None = None
    is_eager: bool = False
    called_directly: bool = True
    delivery_info: dict[str, Any] = attrs.Factory(dict)
    #: headers the caller added with ``apply_async(headers={...})``
    headers: dict[str, Any] = attrs.Factory(dict)
    timelimit: tuple[float | None, float | None] = (None, None)
    #: the stamps of this task (``sig.stamp(...)``), by name, and their names
    stamps: dict[str, Any] = attrs.Factory(dict)
    stamped_headers: list[str] = attrs.Factory(list)
    #: the runtime executing this request (a worker's, or an eager run's); internal
    runtime: Any = attrs.field(default=None, repr=False, eq=False)
    #: where in its workflow this request runs (an ``At``), and how many parts it added
    #: to its chord so far (``add_to_chord``); internal
    place: Any = attrs.field(default=None, repr=False, eq=False)
    parts_added: int = attrs.field(default=0, repr=False, eq=False)

    @classmethod
    def of(cls, request: Request, args: Iterable[Any], kwargs: Mapping[str, Any],
           **fields: Any) -> Context:
        """The context of a received message (``fields``: where and how it runs)."""
        from flowq.runtime.message import RESERVED_HEADERS

        return cls(id=request.id, task=request.task, root_id=request.root_id,
                   parent_id=request.parent_id, group=request.group,
                   group_index=request.group_index, retries=request.retries,
                   args=tuple(args), kwargs=dict(kwargs), eta=request.eta,
                   expires=request.expires, called_directly=False,
                   headers={k: v for k, v in request.headers.items()
                            if k not in RESERVED_HEADERS},
                   timelimit=(request.soft_time_limit, request.time_limit),
                   stamps=dict(request.stamps), stamped_headers=list(request.stamps),
                   **fields)

    def __getattr__(self, name: str) -> Any:
        """A header the caller (or a ``before_task_publish`` receiver) added, as an
        attribute, as in Celery: tracing integrations read ``request.traceparent``."""
        if name.startswith("__") or name == "headers":
            raise AttributeError(name)
        try:
            return self.headers[name]
        except KeyError:
            raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r} "
                                 f"(and the message has no header of that name)") from None


class _RequestStack(threading.local):
    def __init__(self) -> None:
        self.stack: list[Context] = []


_requests = _RequestStack()


def current_request() -> Context | None:
    """The request of the task running in this thread, if any."""
    return _requests.stack[-1] if _requests.stack else None


class Task(Generic[P, R]):
    """A registered task. Use ``@app.task`` rather than building one directly.

    The class attributes below are the task options (Celery's names) with their
    defaults; ``@app.task(max_retries=5, ...)`` overrides them for one task. ``None``
    for a flag means "use the app's setting".

    For a type checker a task is ``Task[P, R]``: ``P`` its function's parameters (without
    ``self`` for ``bind=True``), ``R`` its return type. Calling it, ``delay(...)`` and
    ``si(...)`` are checked against ``P``, and ``delay(...).get()`` is an ``R``. ``s(...)``
    is not checked: a signature's arguments may be partial (the parent's result and a
    workflow's arguments come first), which Python's type system cannot express; nor are
    ``apply_async``'s ``args``/``kwargs`` (a tuple and a dict), though its call options are.
    """

    max_retries: int | None = 3
    default_retry_delay: float = 180
    autoretry_for: tuple[type[BaseException], ...] = ()
    dont_autoretry_for: tuple[type[BaseException], ...] = ()
    retry_kwargs: dict[str, Any] = {}  # noqa: RUF012 - read-only default
    retry_backoff: bool | float = False
    retry_backoff_max: float = 600
    retry_jitter: bool = True
    acks_late: bool | None = None
    reject_on_worker_lost: bool | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    rate_limit: str | float | None = None
    ignore_result: bool = False
    serializer: str | None = None
    queue: str | None = None
    priority: int | None = None
    expires: float | None = None
    track_started: bool | None = None
    typing: bool = True

    def __init__(self, app: Flowq, fn: Callable[..., R], name: str, bind: bool = False,
                 options: Mapping[str, Any] | None = None, known_options: Iterable[str] = ()):
        self.app = app
        self.fn = fn
        self.name = name
        self.bind = bind
        unknown = set(options or {}) - set(TASK_OPTIONS) - set(known_options)
        if unknown:
            import difflib

            option = sorted(unknown)[0]
            close = difflib.get_close_matches(option, [*TASK_OPTIONS, *known_options], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigurationError(f"task {name!r}: unknown option {option!r}{hint}")
        for option, value in (options or {}).items():
            setattr(self, option, value)
        self.options: dict[str, Any] = dict(options or {})
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        self._check_time_limits()

    def _check_time_limits(self) -> None:
        soft, hard = self.soft_time_limit, self.time_limit
        if soft is not None and hard is not None and soft > hard:
            raise ConfigurationError(f"task {self.name!r}: soft_time_limit ({soft}) is greater "
                                     f"than time_limit ({hard})")

    # -- calling ------------------------------------------------------------------------

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now (no message, no result stored)."""
        if self.bind:
            return self.fn(self, *args, **kwargs)
        return self.fn(*args, **kwargs)

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self(*args, **kwargs)

    @functools.cached_property
    def call_signature(self) -> inspect.Signature:
        """Parameters a message binds to (``self`` excluded for bound tasks)."""
        try:
            sig = inspect.signature(self.fn, eval_str=True)
        except Exception:  # annotations that do not evaluate: show them as written
            sig = inspect.signature(self.fn)
        if self.bind:
            params = list(sig.parameters.values())[1:]
            sig = sig.replace(parameters=params)
        return sig

    @property
    def request(self) -> Context:
        """The current invocation's context (an empty one outside a worker)."""
        request = current_request()
        return request if request is not None and request.task == self.name else Context()

    # -- signatures ---------------------------------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A signature of this task with partial arguments (not type-checked: the parent's
        result, and arguments given to the workflow, are added in front)."""
        return Signature(self.name, args, kwargs, bound_app=self.app)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]:
        """An immutable signature: it ignores its parent's result, so its arguments are
        the whole call (and type-checked as such)."""
        return Signature(self.name, args, kwargs, immutable=True, bound_app=self.app)

    def signature(self, args: Iterable[Any] | None = None,
                  kwargs: Mapping[str, Any] | None = None, **options: Any) -> Signature[R]:
        immutable = bool(options.pop("immutable", False))
        return Signature(self.name, tuple(args or ()), kwargs or {}, options, immutable,
                         self.app)

    subtask = signature

    # -- sending ------------------------------------------------------------------------

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> AsyncResult[R]:
        """Send this task to a worker: ``add.delay(2, 2).get()``."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None,
                    **options: Unpack[CallOptions]) -> AsyncResult[R]:
        """Send with call options (countdown, eta, expires, task_id, queue, priority, ...).

        For arguments checked against the function, write ``add.si(2, 2).apply_async(...)``.
        """
        result: AsyncResult[R] = self.app.send(self.s(*(args or ()), **(kwargs or {})),
                                               None, None, **options)
        return result

    def apply(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              throw: bool | None = None, **options: Unpack[CallOptions]) -> AsyncResult[R]:
        """Run here, now, as a worker would; returns a result handle.

        ``throw`` re-raises the task's exception (default: the ``task_eager_propagates``
        setting), as in Celery.
        """
        result: AsyncResult[R] = self.app.apply(self.s(*(args or ()), **(kwargs or {})),
                                                None, None, throw=throw, **options)
        return result

    def AsyncResult(self, task_id: str) -> AsyncResult[R]:  # noqa: N802 - Celery's name
        return self.app.AsyncResult(task_id)

    # -- inside a running task ------------------------------------------------------------

    def retry(self, args: Iterable[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              exc: BaseException | None = None, throw: bool = True, eta: Any = None,
              countdown: float | None = None, max_retries: int | None = None,
              **options: Any) -> Retry:
        """Retry the running task later (raises :class:`Retry`; the worker re-sends it).

        When the retries are used up, raises :class:`MaxRetriesExceededError` carrying
        ``exc``.
        """
        request = self.request
        limit = self.max_retries if max_retries is None else max_retries
        if limit is not None and request.retries >= limit:
            raise MaxRetriesExceededError(
                f"task {self.name}[{request.id}] gave up after {request.retries} retries"
                + (f": {type(exc).__name__}: {exc}" if exc else ""), exc) from exc
        if countdown is None and eta is None:
            countdown = self.default_retry_delay
        error = Retry(exc=exc, when=countdown, eta=eta,
                      args=None if args is None else tuple(args),
                      kwargs=None if kwargs is None else dict(kwargs), options=options)
        if throw:
            raise error
        return error

    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None, **kwargs: Any) -> None:
        """Record a state of the running task (or of ``task_id``) with ``meta``, as in
        Celery: ``self.update_state(state="PROGRESS", meta={"current": 3, "total": 10})``.

        ``AsyncResult.state`` then reads the state and ``.info`` the meta. Only unfinished
        states can be recorded (custom ones such as PROGRESS, or STARTED, RETRY...): the
        task's outcome is recorded once, when it returns or raises, and a state written
        after a task finished is ignored. One backend write. ``kwargs`` are accepted for
        Celery's signature and ignored.

        Raises :class:`~flowq.exceptions.InvalidState` for a terminal or empty state, or
        with no ``task_id`` outside a running task.
        """
        if not state:
            raise InvalidState("update_state needs a state name, e.g. state='PROGRESS'")
        if state in states.READY_STATES:
            raise InvalidState(f"update_state cannot record {state}: a task's outcome is "
                               f"recorded when it returns or raises, once; report progress "
                               f"with an unfinished state such as 'PROGRESS'")
        task_id = task_id or self.request.id
        if task_id is None:
            raise InvalidState(f"update_state outside a running task needs task_id= "
                               f"(task {self.name!r})")
        running = current_request()  # an eager run records into its own backend
        runtime = (running.runtime if running is not None else None) or self.app.runtime
        runtime.backend.store(task_id, state, self.app.result_codec.success(meta),
                              expires=self.app.conf.result_expires)

    def replace(self, sig: Any) -> None:
        """Replace the running task with the workflow ``sig`` (Celery's ``Task.replace``).

        The task's result becomes ``sig``'s result and its place in any enclosing
        workflow is kept: what waits on this task waits on ``sig`` instead. A replacement
        that cannot run (an empty chain, a chord without a body, bad arguments) raises
        InvalidWorkflow here, so the task fails with that error.
        """
        from flowq.canvas.signature import Canvas

        if not isinstance(sig, Canvas):
            raise InvalidWorkflow([(f"self.replace() in {self.name}",
                                    f"expected a signature or workflow, got {sig!r}")])
        try:
            self.app.compile(sig)
        except InvalidWorkflow as exc:
            raise InvalidWorkflow([(f"self.replace() in {self.name}", f"{where}: {what}")
                                   for where, what in exc.problems]) from None
        raise Replace(sig)

    def add_to_chord(self, sig: Any, lazy: bool = False) -> PartResult:
        """Add ``sig`` (a task signature) to the chord or group the running task is a
        member of, and send it: the chord's body then also waits for it, and its result
        comes after the members' (and earlier additions') in the list. Celery's
        ``Task.add_to_chord``, on every backend.

        A redelivered task adding again adds the same part once. ``lazy=True`` (send it
        later yourself) is not supported: a part must be sent as one.
        """
        from flowq.canvas.signature import as_canvas

        request = self.request
        if lazy:
            raise ConfigurationError("add_to_chord(sig, lazy=True) is not supported: call "
                                     "add_to_chord(sig) when the part should be sent")
        if request.place is None or request.group is None:
            raise InvalidWorkflow([(self.name, "add_to_chord() needs a running task that is a "
                                               "member of a chord or group")])
        from flowq.result import AsyncResult

        request.parts_added += 1
        runtime = request.runtime
        part_id = runtime.advancer.add_part(request.place, as_canvas(sig) or sig,
                                            f"{request.id}:{request.parts_added}")
        return AsyncResult(part_id, self.app, backend=runtime.backend)

    def backoff_delay(self, retries: int) -> float:
        """Seconds before automatic retry number ``retries + 1`` (exponential, capped)."""
        if not self.retry_backoff:
            return float(self.default_retry_delay)
        factor = 1 if self.retry_backoff is True else float(self.retry_backoff)
        delay = min(factor * (2 ** retries), float(self.retry_backoff_max))
        return random.uniform(0, delay) if self.retry_jitter else delay

    def __repr__(self) -> str:
        return f"<@task: {self.name}>"


#: Task options flowq itself understands: the annotated class attributes of Task.
TASK_OPTIONS = tuple(name for name in Task.__annotations__)
