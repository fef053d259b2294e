"""The worker's main-process side of a message: check it, hand it to the pool, ack it.

Messages are taken from the broker up to the prefetch limit and held in a local
buffer; one is handed to the pool only when a pool process is free, and (unless the
task uses ``acks_late``) acked at that moment. So on a warm shutdown every message not
yet started goes straight back to its queue, and a late-acked message is acked only
after its result and its effects on the workflow are recorded.

A message that must not run (malformed, forbidden content type, unknown protocol or
task) is never executed and never requeued: a copy goes to ``<queue>.dead`` with an
``x-flowq-reason`` header, the original is acked, and the worker carries on.
"""

from __future__ import annotations

import functools
import logging
import queue
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from billiard import exceptions as pool_errors
from kombu import Producer
from kombu.exceptions import OperationalError
from redis import exceptions as redis_errors
from kombu.message import Message

from flowq import exceptions, states
from flowq.exceptions import (
    BackendError,
    BrokerError,
    InvalidSignature,
    MalformedCanvas,
    NotRegistered,
    ProtocolError,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from flowq.runtime import broker, logs, signalling, signing
from flowq.runtime.advance import At
from flowq.runtime.events import DISABLED
from flowq.runtime.hooks import TaskHook
from flowq.runtime.execute import FAILURE, MALFORMED, REJECT, SUCCESS, Outcome, short
from flowq.runtime.message import Request, check_size, parse
from flowq.runtime.pool import Pool
from flowq.runtime.ratelimit import RateLimits

if TYPE_CHECKING:
    from flowq.app import Flowq

log = logging.getLogger("flowq.worker")
#: Errors meaning a server is unreachable, not that the task is wrong: a job that ends
#: with one of these is retried (acks_late) or advanced later, never failed for it.
OUTAGES: tuple[type[BaseException], ...] = (BackendError, BrokerError, OSError,
                                            sqlite3.OperationalError, OperationalError,
                                            redis_errors.ConnectionError,
                                            redis_errors.TimeoutError)
security_log = logging.getLogger("flowq.security")
REASON_HEADER = broker.REASON_HEADER
_REPR_LIMIT = 1024


@attrs.define(slots=True)
class Job:
    """A message taken from the broker, and what we know about it."""

    message: Message
    request: Request
    queue: str
    late_ack: bool
    generation: int
    received: float = attrs.field(factory=time.monotonic)
    started: float | None = None
    handle: Any = None  # the pool's handle on the running job (to terminate it)
    killed: bool = False  # terminated by a revoke
    signum: int | None = None  # the signal that terminated it
    interrupted: bool = False  # by a cold shutdown: settled, whatever the pool says later


class Intake:
    """Buffers, checks, dispatches and acknowledges messages for one worker."""

    def __init__(self, app: Flowq, pool: Pool, hostname: str,
                 revoked: Callable[[Request], str | None]):
        self.app = app
        self.pool = pool
        self.hostname = hostname
        self.revoked = revoked
        self.buffer: deque[Job] = deque()
        self.held: deque[Job] = deque()  # waiting for their task's rate limit
        self.active: dict[str, Job] = {}
        #: Early-acked jobs that finished but could not publish their next steps.
        self.unadvanced: deque[Job] = deque()
        self.limits = RateLimits()
        conf = app.conf
        self.keys = signing.keyring(conf.security_key, conf.security_key_id, conf.security_keys)
        self.finished: queue.SimpleQueue[tuple[Job, Outcome | None, BaseException | None]] = (
            queue.SimpleQueue())
        self.generation = 0  # bumped on reconnect: older delivery tags are dead
        self.channel: Any = None
        self.counts = {"received": 0, "succeeded": 0, "failed": 0, "dead": 0}
        #: Told of every job's progress: task events (when on) and ``observers``.
        self.events: TaskHook = DISABLED
        self.observers: list[TaskHook] = []  # e.g. metrics, whatever the events setting
        self.quorum = broker.quorum_queues(conf)  # the broker counts deliveries

    # -- intake ---------------------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """kombu callback: validate the envelope, then buffer or settle the message."""
        queue_name = (message.delivery_info or {}).get("routing_key") or "?"
        self.counts["received"] += 1
        conf = self.app.conf
        try:
            check_size(message.headers, message.body, conf.message_header_limit,
                       conf.message_body_limit)
            request = parse(message.headers, message.body, message.content_type,
                            message.content_encoding, self.app.accepted_content,
                            conf.workflow_max_nodes)
            if self.keys:
                self._verify(request)
        except ProtocolError as exc:
            self.dead_letter(message, queue_name, exc)
            signalling.rejected(self, message, exc)
            return
        task = self.app.tasks.get(request.task)
        if task is None:
            self.reject_unknown(message, queue_name, request)
            return
        job = Job(message, request, queue_name, self.app.acks_late(task), self.generation)
        log.info("Task %s[%s] received", display_name(request), request.id,
                 extra=logs.about(request))
        self.events.task_received(job)
        reason = self.revoked(request)
        if reason:
            self.settle_revoked(job, reason)
            return
        signalling.received(self, request)
        self.buffer.append(job)

    def _verify(self, request: Request) -> None:
        """With signing on: refuse unsigned, altered or stale messages, and skip a replay
        of a task that already finished (its result exists)."""
        signing.verify(request.headers, request.body, request.content_type,
                       request.content_encoding, self.keys, self.app.conf.security_message_ttl,
                       request.eta)
        record = self.app.runtime.backend.get(request.id)
        if record is not None and record.state in states.READY_STATES:
            raise InvalidSignature(f"task {request.id} already finished: a replayed message")

    def pump(self, stopping: bool) -> None:
        """Hand messages to free pool processes: rate-limited ones first when their
        bucket allows, then the buffer in arrival order."""
        if stopping:
            return
        still_held: deque[Job] = deque()
        refused: set[str] = set()  # a task whose bucket is empty refuses its later jobs too
        while self.held and self._free():
            job = self.held.popleft()
            if job.request.task not in refused and self._allowed(job):
                self._dispatch(job)
            else:
                refused.add(job.request.task)
                still_held.append(job)
        still_held.extend(self.held)
        self.held = still_held
        while self.buffer and self._free():
            job = self.buffer.popleft()
            if self._allowed(job):
                self._dispatch(job)
            else:
                self.held.append(job)

    def _free(self) -> bool:
        return len(self.active) < self.pool.concurrency

    def _allowed(self, job: Job) -> bool:
        task = self.app.tasks.get(job.request.task)
        return self.limits.allow(job.request.task, task.rate_limit if task else None)

    def _dispatch(self, job: Job) -> None:
        reason = self.revoked(job.request)
        if reason:
            self.settle_revoked(job, reason)
            return
        if not job.late_ack:
            self._ack(job)
        elif self._delivered_too_often(job):
            return
        job.started = time.monotonic()
        self.active[job.request.id] = job
        self.events.task_started(job)
        request = job.request
        payload = (dict(request.headers), request.body, request.content_type,
                   request.content_encoding, job.late_ack,
                   dict(job.message.delivery_info or {}), self.hostname)
        job.handle = self.pool.apply(
            payload, functools.partial(self._done, job), functools.partial(self._lost, job),
            self._limit(request, "soft_time_limit"), self._limit(request, "time_limit"))

    def _done(self, job: Job, outcome: Outcome) -> None:
        """Pool callback (another thread): the job finished; settled in the main loop."""
        self.finished.put((job, outcome, None))

    def _lost(self, job: Job, error: BaseException) -> None:
        """Pool callback (another thread): the job's process died or broke."""
        self.finished.put((job, None, error))

    def _delivered_too_often(self, job: Job) -> bool:
        """Count the runs of a late-acked message durably (before it runs); past
        ``task_max_deliveries`` it fails and is dead-lettered instead of looping.

        A quorum queue counts deliveries itself (``x-delivery-count``), including those to
        workers that died before starting the task. Elsewhere a first delivery (the broker
        says it was never delivered before) costs nothing, and a redelivery is counted in
        the result backend, the first delivery included: whether that one ran is not known
        (the worker holding it may have died with it still prefetched), so the count is at
        most one too high, never low. A broker that does not say counts every run.
        """
        request = job.request
        redelivered = (job.message.delivery_info or {}).get("redelivered")
        limit = self.app.conf.task_max_deliveries
        count = broker.quorum_deliveries(job.message.headers) if self.quorum else None
        if count is None:
            if redelivered is False:
                return False
            key = delivery_counter(request.id, request.retries)
            try:
                count = self.app.runtime.backend.incr(key, expires=self.app.conf.result_expires)
            except BackendError as exc:  # run it: without a backend it cannot finish anyway,
                log.warning("Could not count deliveries of %s: %s", request.id, exc,
                            extra=logs.about(request))  # and returns
                return False
            count += 1 if redelivered else 0
        if count <= limit:
            return False
        error = WorkerLostError(f"{request.task}[{request.id}] was delivered {count} times "
                                f"without finishing (task_max_deliveries={limit}); the process "
                                f"running it keeps dying")
        self._fail(job, error)
        self.counts["failed"] += 1
        self.dead_letter(job.message, job.queue, error, job)
        return True

    def terminate(self, task_ids: set[str], signum: int) -> list[str]:
        """Kill the processes running any of ``task_ids`` (or their workflows), once each."""
        return self.terminate_matching(
            lambda request: request.id in task_ids or request.root_id in task_ids, signum)

    def terminate_matching(self, match: Callable[[Request], Any], signum: int) -> list[str]:
        """Kill the processes running tasks ``match`` selects, once each; their ids."""
        killed = []
        for job in list(self.active.values()):
            if not job.killed and match(job.request) and self.pool.kill(job.handle, signum):
                job.killed, job.signum = True, signum
                killed.append(job.request.id)
        return killed

    def _limit(self, request: Request, name: str) -> float | None:
        """Time limit ``name`` (``time_limit``/``soft_time_limit``) for one run: the
        call's, else the task's as this worker knows it, else the worker-wide setting."""
        given = request.soft_time_limit if name == "soft_time_limit" else request.time_limit
        if given is not None:
            return given
        declared = getattr(self.app.tasks.get(request.task), name, None)
        return declared if declared is not None else self.app.conf[f"task_{name}"]

    # -- completion ---------------------------------------------------------------------------

    def collect(self) -> int:
        """Settle every job the pool finished since the last call; return how many."""
        settled = 0
        while True:
            try:
                job, outcome, error = self.finished.get_nowait()
            except queue.Empty:
                return settled
            if job.interrupted:
                continue
            self.active.pop(job.request.id, None)
            settled += 1
            if outcome is not None:
                self._settle_outcome(job, outcome)
            else:
                self._settle_error(job, error)

    def _settle_outcome(self, job: Job, outcome: Outcome) -> None:
        request = job.request
        self.events.task_finished(job, outcome)
        if outcome.status == MALFORMED:
            error_type = getattr(exceptions, outcome.error or "", ProtocolError)
            if not (isinstance(error_type, type) and issubclass(error_type, ProtocolError)):
                error_type = ProtocolError
            error = error_type(outcome.summary)
            self.dead_letter(job.message, job.queue, error, job)
            signalling.rejected(self, job.message, error)
            return
        if outcome.status == REJECT:
            if job.late_ack and outcome.requeue:
                self._requeue(job)
            else:
                self.dead_letter(job.message, job.queue,
                                 ProtocolError(f"rejected by the task: {outcome.summary}"), job)
            return
        self._ack(job)
        key = "succeeded" if outcome.status == SUCCESS else (
            "failed" if outcome.status == FAILURE else None)
        if key:
            self.counts[key] += 1
        detail = f": {outcome.summary}" if outcome.summary else ""
        level = logging.ERROR if outcome.status == FAILURE else logging.INFO
        log.log(level, "Task %s[%s] %s in %.4fs%s", display_name(request), request.id,
                outcome.status, outcome.runtime, detail, extra=logs.about(request))

    def _settle_error(self, job: Job, error: BaseException | None) -> None:
        """The pool lost the job: the child died, hit its hard time limit, or broke."""
        request = job.request
        task = self.app.tasks.get(request.task)
        reject_on_lost = (task.reject_on_worker_lost if task and task.reject_on_worker_lost
                          is not None else self.app.conf.task_reject_on_worker_lost)
        if isinstance(error, pool_errors.TimeLimitExceeded):
            limit = self._limit(request, "time_limit")
            failure: BaseException = TimeLimitExceeded(
                f"hard time limit ({limit}s) exceeded for {request.task}[{request.id}]")
            log.error("Hard time limit (%ss) exceeded for %s[%s]", limit, request.task,
                      request.id, extra=logs.about(request))
        elif isinstance(error, (pool_errors.WorkerLostError, pool_errors.Terminated,
                                SystemExit)):
            reason = self.revoked(request)
            if reason:  # terminated on purpose by a revoke
                self.settle_revoked(job, reason, terminated=True)
                return
            if job.late_ack and reject_on_lost:
                log.warning("Process running %s[%s] died; message requeued",
                            request.task, request.id, extra=logs.about(request))
                self._requeue(job)
                return
            failure = WorkerLostError(f"worker process died while running {request.task}"
                                      f"[{request.id}]: {error}")
            log.error("Process running %s[%s] died: %s", request.task, request.id, error,
                      extra=logs.about(request))
        elif isinstance(error, OUTAGES):
            # The child could not record the outcome or publish the next steps (backend
            # or broker down): with acks_late the message goes back so the task runs
            # again; an early-acked one is advanced from its stored result later.
            log.error("Task %s[%s] could not be recorded: %s: %s", request.task, request.id,
                      type(error).__name__, error, extra=logs.about(request))
            if job.late_ack:
                self._requeue(job)
            else:
                self.unadvanced.append(job)
            return
        else:
            # Anything else is a fault of the task's own making that escaped the child's
            # recording (running it again would fail the same way): the task fails with it.
            failure = error if isinstance(error, Exception) else WorkerLostError(repr(error))
            log.error("Task %s[%s] failed outside the task: %s: %s", request.task, request.id,
                      type(error).__name__, error, extra=logs.about(request))
        self._fail(job, failure)
        self._ack(job)
        self.counts["failed"] += 1
        self.events.task_failed(job, failure)

    def advance_unadvanced(self) -> None:
        """Publish the next steps of early-acked tasks whose result was stored while the
        broker was away (the message is gone, so nothing else would). A task whose result
        never got stored is lost, as early ack allows; the log says so. Stops at the
        first error and tries again on the next call."""
        runtime = self.app.runtime
        while self.unadvanced:
            job = self.unadvanced[0]
            request = job.request
            try:
                record = runtime.backend.get(request.id)
                if record is not None and record.state in states.READY_STATES:
                    carried = runtime.workflows.load(request.headers, request.task, request.id)
                    runtime.advancer.replay(
                        At(carried, request.node, request.root_id, request.item), record)
                    log.info("Task %s[%s] advanced after the outage", request.task, request.id,
                             extra=logs.about(request))
                else:
                    log.error("Task %s[%s] finished but its result was not stored: lost "
                              "(acks_late would run it again)", request.task, request.id,
                              extra=logs.about(request))
            except (BackendError, BrokerError) as exc:
                log.warning("Could not advance %s[%s] yet: %s", request.task, request.id, exc,
                            extra=logs.about(request))
                return
            except ProtocolError as exc:  # e.g. its stored workflow is gone: cannot be done
                log.error("Cannot advance %s[%s]: %s", request.task, request.id, exc,
                          extra=logs.about(request))
            self.unadvanced.popleft()

    def _fail(self, job: Job, error: BaseException, state: str = states.FAILURE) -> None:
        """Record ``error`` for the job's node and fail everything downstream; a failure
        of a known task is also announced (``task_failure``), since the process that ran
        it could not."""
        request = job.request
        runtime = self.app.runtime
        try:
            carried = runtime.workflows.load(request.headers, request.task, request.id)
        except MalformedCanvas:
            runtime.backend.store(request.id, state, self.app.result_codec.failure(error))
        else:
            runtime.advancer.failed(At(carried, request.node, request.root_id, request.item),
                                    error, None, state=state, late_ack=job.late_ack)
        if state == states.FAILURE:
            signalling.failed_elsewhere(self.app.tasks.get(request.task), request,
                                        self.app.accepted_content, error)

    # -- special outcomes --------------------------------------------------------------------

    def settle_revoked(self, job: Job, reason: str, terminated: bool = False) -> None:
        """Record REVOKED (``reason``: revoked or expired) and fail what waits on it."""
        request = job.request
        what = f"{reason} and terminated" if terminated else f"{reason} (not run)"
        log.info("Task %s[%s] %s", request.task, request.id, what, extra=logs.about(request))
        self.events.task_revoked(job, reason, terminated)
        self._fail(job, TaskRevokedError(f"task {request.task}[{request.id}] {what}"),
                   states.REVOKED)
        self._ack(job)
        signalling.revoked(self.app.tasks.get(request.task), request, self.app.accepted_content,
                           terminated=terminated, signum=job.signum if terminated else None,
                           expired=reason == "expired")

    def reject_unknown(self, message: Message, queue_name: str, request: Request) -> None:
        error = NotRegistered(self.app.unknown_task_message(request.task))
        job = Job(message, request, queue_name, False, self.generation)
        self._fail(job, error)
        self.dead_letter(message, queue_name, error)
        signalling.unknown(self, message, request, error)

    def dead_letter(self, message: Message, queue_name: str, error: BaseException,
                    job: Job | None = None) -> None:
        """Keep a copy with the reason in ``<queue>.dead``, then ack: never run, never loop."""
        self.counts["dead"] += 1
        self.events.task_rejected(message.headers, queue_name, error)
        reason = f"{type(error).__name__}: {error}"[:_REPR_LIMIT]
        (security_log if isinstance(error, InvalidSignature) else log).error("Message from %s rejected to %s%s: %s | headers=%s", queue_name, queue_name,
                  broker.DEAD_LETTER_SUFFIX, reason, short(message.headers, _REPR_LIMIT))
        headers = dict(message.headers or {})
        headers[REASON_HEADER] = reason
        dead = broker.dead_letter_queue_for(self.app.conf, queue_name)
        try:
            Producer(self.channel).publish(
                message.body, exchange=dead.exchange, routing_key=dead.routing_key,
                headers=headers, content_type=message.content_type or "application/octet-stream",
                content_encoding=message.content_encoding or "binary", declare=[dead])
        except Exception as exc:  # the message is still acked: a bad message must not loop
            log.error("Could not dead-letter the message: %s", exc)
        if job is None or job.generation == self.generation:
            _safe(message.ack)

    def _ack(self, job: Job) -> None:
        if job.generation == self.generation and not job.message.acknowledged:
            _safe(job.message.ack)

    def _requeue(self, job: Job) -> None:
        if job.generation == self.generation and not job.message.acknowledged:
            _safe(lambda: job.message.reject(requeue=True))

    def interrupt(self) -> tuple[list[Job], list[Job]]:
        """Cold shutdown, once the pool's processes are killed: settle what finished
        before, then the jobs that were still running.

        An early-acked job's message is gone, so its task is recorded as failed with
        WorkerLostError (its errbacks run and its workflow's later steps fail, as when its
        process dies); a late-acked one goes back to its queue and runs again. Returns
        the (failed, requeued) running jobs.
        """
        while True:
            try:
                job, outcome, _ = self.finished.get_nowait()
            except queue.Empty:
                break
            if outcome is not None:  # a loss reported now is the kill: settled below
                self.active.pop(job.request.id, None)
                self._settle_outcome(job, outcome)
        failed, requeued = [], []
        for job in list(self.active.values()):
            job.interrupted = True
            request = job.request
            if job.late_ack:
                self._requeue(job)
                requeued.append(job)
                continue
            error = WorkerLostError(f"{request.task}[{request.id}] was interrupted by the cold "
                                    f"shutdown of worker {self.hostname}")
            try:
                self._fail(job, error)
            except (BackendError, BrokerError) as exc:
                log.error("Could not record %s[%s] as failed: %s", request.task, request.id, exc)
            self.counts["failed"] += 1
            self.events.task_failed(job, error)
            failed.append(job)
        self.active.clear()
        return failed, requeued

    def requeue_buffered(self) -> int:
        """Give every message not yet started back to the broker (warm shutdown)."""
        count = 0
        for waiting in (self.held, self.buffer):
            while waiting:
                self._requeue(waiting.popleft())
                count += 1
        return count

    def forget_connection(self) -> None:
        """The connection died: its delivery tags are void and the broker redelivers."""
        self.generation += 1
        self.buffer.clear()
        self.held.clear()


def delivery_counter(task_id: str, retries: int) -> str:
    """The backend counter of deliveries of a late-acked task's attempt ``retries``."""
    return f"deliveries:{task_id}:{retries}"


def display_name(request: Request) -> str:
    """The task's name for logs: its ``shadow`` name when the caller gave one."""
    return request.headers.get("shadow") or request.task


def _safe(action: Callable[[], Any]) -> None:
    try:
        action()
    except Exception as exc:  # a dead channel: the broker redelivers, nothing to do here
        log.warning("Could not acknowledge a message: %s", exc)
