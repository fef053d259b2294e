"""Where the runtime sends the signals of :mod:`flowq.signals`, in Celery's terms.

Each function here is called from one place in the runtime and turns flowq's own
objects (messages, requests, outcomes) into the sender and arguments Celery gives the
same signal. Each returns at once when nothing is connected, before building any
argument, so the worker's hot path pays one attribute check per signal. Keeping every
send here (and nowhere else) is what lets worker features become hooks later without
hunting for them.

Processes: publishing signals run in the process that publishes (a producer, or the
pool process that publishes a workflow's next steps); ``task_received``,
``task_rejected``, ``task_unknown`` and ``task_revoked`` in the worker's main process;
the other task signals in the pool process running the task (``task_failure`` also in
the main process, for failures only it can see: a dead process, a hard time limit).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from billiard.einfo import ExceptionInfo
from kombu.serialization import loads

from flowq import signals
from flowq.exceptions import ProtocolError
from flowq.runtime.message import Outgoing, PublishPolicy, Request, decode_body

if TYPE_CHECKING:
    from flowq.task import Context, Task


def exception_info(exc: BaseException) -> ExceptionInfo:
    """billiard's ExceptionInfo (what Celery passes as ``einfo``) for ``exc``; one that was
    never raised gets a traceback by being raised here, as Celery does."""
    if exc.__traceback__ is not None:
        return ExceptionInfo((type(exc), exc, exc.__traceback__))
    try:
        raise exc
    except BaseException:  # noqa: BLE001 - it is ``exc``
        return ExceptionInfo()


# -- publishing ------------------------------------------------------------------------------


def before_publish(headers: dict[str, Any], args: list[Any], kwargs: dict[str, Any],
                   exchange: str, routing_key: str, priority: int | None,
                   policy: PublishPolicy | None) -> int | None:
    """``before_task_publish`` for a message about to be built; receivers may change
    ``headers`` (in place) and ``properties["priority"]``. Returns the priority to use."""
    if not signals.before_task_publish.receivers:
        return priority
    properties: dict[str, Any] = {"correlation_id": headers["id"], "priority": priority,
                                  "delivery_mode": 2}
    signals.before_task_publish.send(
        headers["task"], body=(args, kwargs, {}), exchange=exchange, routing_key=routing_key,
        headers=headers, properties=properties, declare=[],
        retry_policy=None if policy is None else {
            "max_retries": policy.max_retries, "interval_start": policy.interval_start,
            "interval_step": policy.interval_step, "interval_max": policy.interval_max})
    return properties.get("priority")  # type: ignore[no-any-return]


def after_publish(messages: Sequence[Outgoing]) -> None:
    """``after_task_publish`` for each of ``messages``, sent (or kept until their eta)."""
    if not signals.after_task_publish.receivers:
        return
    for message in messages:
        args, kwargs = loads(message.body, message.content_type, message.content_encoding,
                             accept={message.content_type})
        signals.after_task_publish.send(
            message.headers["task"], body=(args, kwargs, {}), exchange=message.exchange,
            routing_key=message.routing_key or message.queue, headers=message.headers)


# -- the worker's main process ------------------------------------------------------------------


def received(consumer: Any, request: Request) -> None:
    if signals.task_received.receivers:
        signals.task_received.send(consumer, request=request)


def rejected(consumer: Any, message: Any, exc: BaseException) -> None:
    """``task_rejected``: a message that is no valid task message was dead-lettered."""
    if signals.task_rejected.receivers:
        signals.task_rejected.send(consumer, message=message, exc=exc)


def unknown(consumer: Any, message: Any, request: Request, exc: BaseException) -> None:
    if signals.task_unknown.receivers:
        signals.task_unknown.send(consumer, message=message, exc=exc, name=request.task,
                                  id=request.id)


def revoked(task: Task[Any, Any] | None, request: Request, accept: Collection[str], *,
            terminated: bool, signum: int | None, expired: bool) -> None:
    """``task_revoked`` with a request context rebuilt from the message."""
    if signals.task_revoked.receivers:
        signals.task_revoked.send(task, request=_context(request, accept),
                                  terminated=terminated, signum=signum, expired=expired)


def failed_elsewhere(task: Task[Any, Any] | None, request: Request, accept: Collection[str],
                     exc: BaseException) -> None:
    """``task_failure`` sent by the main process: the task's process died, or it hit its
    hard time limit, so nobody inside it could send the signal."""
    if signals.task_failure.receivers and task is not None:
        context = _context(request, accept)
        _send_failure(task, request.id, context.args, context.kwargs, exc)


def _context(request: Request, accept: Collection[str]) -> Context:
    """The task's request context as the main process can know it (its arguments are
    decoded here only because a receiver wants them)."""
    from flowq.task import Context

    try:
        args, kwargs = decode_body(request, accept)
    except ProtocolError:
        args, kwargs = [], {}
    return Context.of(request, args, kwargs)


# -- the process running the task ---------------------------------------------------------------


def prerun(task: Task[Any, Any], context: Context) -> None:
    if signals.task_prerun.receivers:
        signals.task_prerun.send(task, task_id=context.id, task=task, args=context.args,
                                 kwargs=context.kwargs)


def postrun(task: Task[Any, Any], context: Context, retval: Any, state: str) -> None:
    if signals.task_postrun.receivers:
        signals.task_postrun.send(task, task_id=context.id, task=task, args=context.args,
                                  kwargs=context.kwargs, retval=retval, state=state)


def succeeded(task: Task[Any, Any], result: Any) -> None:
    if signals.task_success.receivers:
        signals.task_success.send(task, result=result)


def failed(task: Task[Any, Any], context: Context, exc: BaseException) -> None:
    if signals.task_failure.receivers:
        _send_failure(task, context.id, context.args, context.kwargs, exc)


def _send_failure(task: Task[Any, Any], task_id: str | None, args: Any,
                  kwargs: Mapping[str, Any], exc: BaseException) -> None:
    einfo = exception_info(exc)
    signals.task_failure.send(task, task_id=task_id, exception=exc, args=args, kwargs=kwargs,
                              traceback=einfo.tb, einfo=einfo)


def retried(task: Task[Any, Any], context: Context, reason: BaseException) -> None:
    """``task_retry``; ``reason`` is the :class:`~flowq.exceptions.Retry` raised."""
    if signals.task_retry.receivers:
        signals.task_retry.send(task, request=context, reason=reason,
                                einfo=exception_info(reason))


def process_started() -> None:
    if signals.worker_process_init.receivers:
        signals.worker_process_init.send(None)


def process_exiting(pid: int, exitcode: int) -> None:
    if signals.worker_process_shutdown.receivers:
        signals.worker_process_shutdown.send(None, pid=pid, exitcode=exitcode)


# -- workers, beat and logging ------------------------------------------------------------------


def worker_starting(worker: Any) -> None:
    """``worker_init``: before the pool's processes are started (so before any fork)."""
    if signals.worker_init.receivers:
        signals.worker_init.send(worker)


def worker_ready(consumer: Any) -> None:
    if signals.worker_ready.receivers:
        signals.worker_ready.send(consumer)


def worker_stopping(worker: Any) -> None:
    if signals.worker_shutdown.receivers:
        signals.worker_shutdown.send(worker)


def beat_starting(beat: Any, embedded: bool) -> None:
    signals.beat_init.send(beat)
    if embedded:
        signals.beat_embedded_init.send(beat)


def set_up_logging(level: str, logfile: str | None, log_format: str,
                   configure: Callable[[], None]) -> None:
    """Run ``configure`` (flowq's logging set-up) unless a ``setup_logging`` receiver is
    connected, which then configures logging itself; then ``after_setup_logger``.

    Receivers get Celery's arguments: ``loglevel`` as a number, ``logfile`` (a pattern, or
    None for stderr), ``format`` (the text format string, or ``"json"``), ``colorize``.
    """
    from flowq.runtime.logs import TEXT_FORMAT

    options = {"loglevel": getattr(logging, level.upper(), logging.INFO), "logfile": logfile,
               "format": TEXT_FORMAT if log_format == "text" else log_format,
               "colorize": False}
    if signals.setup_logging.send(None, **options):
        return
    configure()
    signals.after_setup_logger.send(None, logger=logging.getLogger(), **options)
