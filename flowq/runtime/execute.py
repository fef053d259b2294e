"""Running one task message: decode, call the function, record, advance the workflow.

This is what a pool child (or the solo pool, or an eager run) does with a message. It
returns a small :class:`Outcome` so the worker's main process knows how to ack and
what to log; everything else (results, chord parts, next steps) is done here.
"""

from __future__ import annotations

import signal
import time
import traceback as tb
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from flowq import states
from flowq.exceptions import (
    EncodeError,
    Ignore,
    InvalidWorkflow,
    MalformedMessage,
    Replace,
    MaxRetriesExceededError,
    NotRegistered,
    ProtocolError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    WorkerLostError,
)
from flowq.runtime import signalling
from flowq.runtime.advance import At
from flowq.runtime.backends.base import Record
from flowq.canvas.dag import JOIN
from flowq.runtime.codec import exception_from_dict
from flowq.runtime.message import Request, decode_body, iso
from flowq.runtime.outgoing import part_of
from flowq.runtime.workflows import is_trivial
from flowq.task import Context, _requests

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.task import Task

SUCCESS, FAILURE, RETRY, REJECT, IGNORE, MALFORMED, REPLACED, DUPLICATE = (
    "succeeded", "failed", "retry", "rejected", "ignored", "malformed", "replaced", "skipped")


@attrs.frozen(slots=True)
class Outcome:
    """How a run ended, for the main process: ack or reject, and one log line."""

    status: str
    runtime: float = 0.0
    summary: str = ""
    requeue: bool = False
    error: str | None = None  # for MALFORMED: the ProtocolError subclass's name
    joins: int = 0  # joins (chord headers, groups, fanouts) this success completed


def short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _soft_limit_handler(signum: int, frame: Any) -> None:
    raise SoftTimeLimitExceeded("soft time limit exceeded")


_soft_limit_installed = False


def install_soft_limit_handler() -> None:
    """Make the pool's soft-limit signal raise flowq's SoftTimeLimitExceeded (once)."""
    global _soft_limit_installed
    if not _soft_limit_installed and hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _soft_limit_handler)
        _soft_limit_installed = True


def execute(app: Flowq, request: Request, *, late_ack: bool = False,
            hostname: str | None = None, eager: bool = False,
            delivery_info: Mapping[str, Any] | None = None, runtime: Any = None) -> Outcome:
    """Run ``request`` in this process and record everything it leads to.

    ``runtime`` defaults to the app's (eager runs pass their own in-memory one).
    """
    runtime = runtime or app.runtime
    task = app.tasks.get(request.task)
    try:
        if task is None:
            raise NotRegistered(app.unknown_task_message(request.task))
        carried = runtime.workflows.load(request.headers, request.task, request.id)
        at = At(carried, request.node, request.root_id, request.item)
        if request.node >= len(carried.workflow.nodes) or at.task_id != request.id:
            raise ProtocolError(f"message id {request.id} does not match node "
                                f"{request.node} of its workflow")
        args, kwargs = decode_body(request, app.accepted_content)
        if request.headers.get("errback") == "request":
            args = _failure_arguments(args)
    except ProtocolError as exc:
        return Outcome(MALFORMED, summary=str(exc), error=type(exc).__name__)
    finished = _already_finished(runtime, request, at, delivery_info)
    if finished is not None:
        if late_ack:  # the delivery that stored it may have died before advancing
            runtime.advancer.replay(at, finished)
        return Outcome(DUPLICATE, summary=f"already {finished.state}: not run again")
    context = Context.of(request, args, kwargs, hostname=hostname, is_eager=eager,
                         delivery_info={**(delivery_info or {}),
                                        "priority": request.headers.get("priority")},
                         runtime=runtime, place=at)
    _requests.stack.append(context)
    try:
        signalling.prerun(task, context)
        outcome, retval, state = _run(app, runtime, task, context, request, at, late_ack, eager)
        signalling.postrun(task, context, retval, state)
    finally:
        _requests.stack.pop()
    return outcome


def _run(app: Flowq, runtime: Any, task: Task[Any, Any], context: Context, request: Request,
         at: At, late_ack: bool, eager: bool) -> tuple[Outcome, Any, str]:
    """Call the task and record how it ended; return the outcome, the value (or the
    exception) and the state's name, for ``task_postrun``."""
    started = time.perf_counter()
    try:
        if app.track_started(task):
            runtime.backend.store(request.id, states.STARTED, app.result_codec.success(None))
        try:
            value = task(*context.args, **context.kwargs)
        except Exception as exc:
            replacement = _autoretry(task, exc)
            if replacement is exc:
                raise
            raise replacement from exc
    except Retry as retry:
        return _retry(app, runtime, task, context, request, at, retry, started)
    except Reject as reject:
        return (Outcome(REJECT, time.perf_counter() - started, str(reject.reason),
                        requeue=reject.requeue), reject, states.REJECTED)
    except Ignore as ignored:
        return Outcome(IGNORE, time.perf_counter() - started), ignored, states.IGNORED
    except Replace as replace:  # Celery's replace ends the task with Ignore, hence IGNORED
        try:
            _replace(app, runtime, request, at, replace.replacement)
        except (InvalidWorkflow, EncodeError) as exc:  # a replacement that cannot be sent
            runtime.advancer.failed(at, exc, None, late_ack=late_ack)
            signalling.failed(task, context, exc)
            return (Outcome(FAILURE, time.perf_counter() - started,
                            f"{type(exc).__name__}: {exc}"), exc, states.FAILURE)
        return (Outcome(REPLACED, time.perf_counter() - started, short(replace.replacement)),
                replace, states.IGNORED)
    except SystemExit as exc:
        if not eager:  # let the process end: its worker reports it as lost (A2)
            raise
        error = WorkerLostError(f"task raised SystemExit({exc.code})")
        runtime.advancer.failed(at, error, tb.format_exc())
        signalling.failed(task, context, error)
        return Outcome(FAILURE, time.perf_counter() - started, short(error)), error, states.FAILURE
    except Exception as exc:
        runtime.advancer.failed(at, exc, tb.format_exc(), late_ack=late_ack,
                                request=_described(context))
        signalling.failed(task, context, exc)
        return (Outcome(FAILURE, time.perf_counter() - started, f"{type(exc).__name__}: {exc}"),
                exc, states.FAILURE)
    ignore = task.ignore_result or request.headers.get("ignore_result") is True
    joins = 0
    if not (ignore and is_trivial(at.workflow)):
        try:
            joins = runtime.advancer.succeeded(at, value, late_ack=late_ack)
        except EncodeError as exc:  # the result serializer cannot carry the value
            runtime.advancer.failed(at, exc, None, late_ack=late_ack)
            signalling.failed(task, context, exc)
            return (Outcome(FAILURE, time.perf_counter() - started, f"EncodeError: {exc}"),
                    exc, states.FAILURE)
    signalling.succeeded(task, value)
    return (Outcome(SUCCESS, time.perf_counter() - started, short(value), joins=joins), value,
            states.SUCCESS)


#: What a new-style errback's ``request`` tells of the failed run (Celery's names).
_DESCRIBED = ("id", "task", "root_id", "parent_id", "group", "group_index", "retries",
              "args", "kwargs", "eta", "expires", "hostname", "delivery_info", "headers")


def _described(context: Context) -> dict[str, Any]:
    """The failed run's request as plain values, for new-style errbacks."""
    doc = {name: getattr(context, name) for name in _DESCRIBED}
    doc["args"] = list(context.args)
    return doc


def _failure_arguments(args: list[Any]) -> list[Any]:
    """A new-style errback's first three arguments rebuilt from plain values: the failed
    task's request (a Context), its exception (rebuilt safely) and its traceback."""
    if len(args) < 3 or not isinstance(args[0], dict):
        raise MalformedMessage("an errback message must start with the failed task's "
                               "request, exception and traceback")
    described, exc, traceback = args[:3]
    known = {name: described[name] for name in _DESCRIBED if name in described}
    known["args"] = tuple(known.get("args") or ())
    request = Context(**known, called_directly=False)
    return [request, exception_from_dict(exc), traceback, *args[3:]]


def _replace(app: Flowq, runtime: Any, request: Request, at: At, replacement: Any) -> None:
    """Send ``replacement`` so that its outcome becomes this task's (see builtins)."""
    from flowq.runtime import builtins

    where = builtins.place(at, request.task)
    workflow = (replacement | app.tasks[builtins.RESUME].s(where=where)).on_error(
        app.tasks[builtins.RESUME_FAILURE].s(where=where))
    if request.stamps:  # the replacement keeps the task's stamps, as in Celery
        workflow = workflow.stamp(**request.stamps)
    carried = runtime.workflows.carry(app.compile(workflow))
    runtime.advancer.start(carried, request.root_id, request.id)


def _already_finished(runtime: Any, request: Request, at: At,
                      delivery_info: Mapping[str, Any] | None) -> Record | None:
    """The stored result of a message that may be a duplicate, if it finished already.

    Duplicates come from redelivery, from a workflow step published twice (its parent's
    delivery died between publishing and recording that it had) and from a delayed
    message moved to its queue twice (its mover died before dropping it from the delay
    index); a message a client sent for now (a workflow's first steps, no ETA) is looked
    up only when redelivered, so plain ``delay()`` calls pay nothing for this.
    """
    node = at.workflow.nodes[request.node]
    redelivered = bool((delivery_info or {}).get("redelivered")
                       or request.headers.get("redelivered"))
    if (node.input is None and request.item is None and not node.deferred
            and not redelivered and request.eta is None):
        return None
    record = runtime.backend.get(request.id)
    return record if record is not None and record.state in states.READY_STATES else None


def _autoretry(task: Task[Any, Any], exc: Exception) -> Exception:
    """The exception to raise for ``exc``: a Retry when ``autoretry_for`` covers it."""
    if (isinstance(exc, (Retry, Reject, Ignore)) or not task.autoretry_for
            or not isinstance(exc, tuple(task.autoretry_for))
            or (task.dont_autoretry_for and isinstance(exc, tuple(task.dont_autoretry_for)))):
        return exc
    options = dict(task.retry_kwargs or {})
    countdown = options.pop("countdown", None)
    if countdown is None:
        countdown = task.backoff_delay(task.request.retries)
    try:
        return task.retry(exc=exc, countdown=countdown, throw=False, **options)
    except MaxRetriesExceededError as exhausted:
        return exhausted


def _retry(app: Flowq, runtime: Any, task: Task[Any, Any], context: Context, request: Request,
           at: At, retry: Retry, started: float) -> tuple[Outcome, Any, str]:
    """Record RETRY and send the same task (same id, same place) again later.

    The retry keeps the original expiry; if it can no longer run in time, the task
    fails instead of being sent.
    """
    extra = dict(retry.options)
    if request.expires is not None:
        extra["expires"] = iso(request.expires)
    if retry.eta is not None:
        extra["eta"] = retry.eta
    reason = retry.exc if retry.exc is not None else retry
    joined = at.workflow.nodes[request.node].kind == JOIN  # an added or streamed part
    try:
        message = runtime.builder.for_node(
            at.carried, request.node,
            context.args if retry.retry_args is None else retry.retry_args,
            context.kwargs if retry.retry_kwargs is None else retry.retry_kwargs,
            root_id=request.root_id, parent_id=request.parent_id, item=request.item,
            retries=request.retries + 1, task_id=request.id,
            eta=None if retry.eta is not None else time.time() + float(retry.when or 0),
            extra=extra, part=part_of(request.task, request.headers) if joined else None)
    except (InvalidWorkflow, EncodeError) as exc:
        runtime.advancer.failed(at, exc)
        signalling.failed(task, context, exc)
        return (Outcome(FAILURE, time.perf_counter() - started, f"cannot retry: {exc}"), exc,
                states.FAILURE)
    runtime.backend.store(request.id, states.RETRY,
                          app.result_codec.failure(reason, "".join(tb.format_exception(reason))),
                          expires=app.conf.result_expires)
    runtime.publish([message])
    signalling.retried(task, context, retry)
    return Outcome(RETRY, time.perf_counter() - started, short(reason)), retry, states.RETRY
