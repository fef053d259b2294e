"""Execution pools: where task code runs while the main process keeps consuming.

* ``prefork`` (default): a billiard process pool. Children are replaced when they die,
  hit ``max_tasks_per_child``, or end a task above ``max_memory_per_child`` KiB of
  resident memory; a job whose child dies reports WorkerLostError, and one over its
  hard time limit gets its child killed and reports TimeLimitExceeded.
* ``threads``: a thread pool, for I/O-bound tasks (no time limits).
* ``solo``: runs each task in the main process, one at a time.

Only a small tuple crosses into a child: the message's headers and raw body. The child
decodes, runs and records everything itself (see :mod:`flowq.runtime.execute`) and
hands back an :class:`~flowq.runtime.execute.Outcome`.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from flowq.runtime import signalling
from flowq.runtime.execute import Outcome, execute, install_soft_limit_handler
from flowq.runtime.message import parse

if TYPE_CHECKING:
    from flowq.app import Flowq

#: (headers, body, content_type, content_encoding, late_ack, delivery_info, hostname)
Payload = tuple[Any, bytes, str, str, bool, dict[str, Any], str]
OnDone = Callable[[Outcome], None]
OnError = Callable[[BaseException], None]

#: Seconds a pool gets to stop its idle processes before they are killed.
STOP_WAIT = 10.0

_child_app: Flowq | None = None
_soft_limits = False


def run_payload(payload: Payload) -> Outcome:
    """Run one task message in this process (the body of every pool job)."""
    app = _child_app
    assert app is not None, "pool child started without an app"
    if _soft_limits:
        install_soft_limit_handler()  # here, not in the initializer: billiard replaces it
    headers, body, content_type, content_encoding, late_ack, delivery_info, hostname = payload
    request = parse(headers, body, content_type, content_encoding, app.accepted_content)
    return execute(app, request, late_ack=late_ack, hostname=hostname,
                   delivery_info=delivery_info)


def _unwrap_error(on_error: OnError, failure: Any) -> None:
    """billiard wraps errors (ExceptionInfo, ExceptionWithTraceback); report the error."""
    error = getattr(failure, "exception", None) or failure
    on_error(getattr(error, "exc", None) or error)


#: The signal that makes a pool child leave the task it runs (``revoke(terminate=True)``
#: with SIGTERM): children ignore SIGTERM itself, see :func:`use_app`.
TERMINATE_SIGNAL = signal.SIGUSR2


def _leave_task(signum: int, frame: Any) -> None:
    raise SystemExit(f"terminated by signal {signum}")


def use_app(app: Flowq, pool_child: bool = False) -> None:
    """Make ``app`` the one :func:`run_payload` uses in this process.

    A pool child ignores SIGTERM and SIGINT: shutdown is the main process's job, and a
    child killed while idle could die holding the pool's queue lock and hang the
    shutdown (a ``kill`` of the whole process group, systemd's default, does that).
    Revoking with ``terminate`` sends :data:`TERMINATE_SIGNAL` instead, and hard time
    limits end with SIGKILL. A pool child then sends ``worker_process_init``.
    """
    global _child_app, _soft_limits
    _child_app = app
    _soft_limits = pool_child
    if pool_child:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(TERMINATE_SIGNAL, _leave_task)
        signalling.process_started()


class Pool:
    """What the worker needs from a pool."""

    concurrency: int

    def start(self) -> None:
        raise NotImplementedError

    def apply(self, payload: Payload, on_done: OnDone, on_error: OnError,
              soft: float | None, hard: float | None) -> Any:
        raise NotImplementedError

    def pids(self) -> list[int]:
        return [os.getpid()]

    def kill(self, handle: Any, signum: int) -> bool:
        """Kill the process running the job ``handle``; False if this pool cannot."""
        return False

    def resize(self, size: int) -> None:
        """Change the number of processes (threads) to ``size``."""
        raise NotImplementedError(f"the {type(self).__name__} cannot be resized")

    def stop(self) -> None:
        """Finish running jobs and stop."""

    def terminate(self) -> None:
        """Stop now, killing running jobs."""


class PreforkPool(Pool):
    def __init__(self, app: Flowq, concurrency: int, max_tasks_per_child: int | None = None,
                 max_memory_per_child: int | None = None):
        self.app = app
        self.concurrency = concurrency
        self.max_tasks_per_child = max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child
        self._pool: Any = None

    def start(self) -> None:
        from billiard.pool import Pool as BilliardPool

        self._pool = BilliardPool(self.concurrency, initializer=use_app,
                                  initargs=(self.app, True),
                                  maxtasksperchild=self.max_tasks_per_child,
                                  # billiard checks it after each task: the child that went
                                  # over finishes that task, then is replaced
                                  max_memory_per_child=self.max_memory_per_child,
                                  putlocks=False,
                                  threads=True, enable_timeouts=True, lost_worker_timeout=1.0,
                                  on_process_exit=signalling.process_exiting)

    def apply(self, payload: Payload, on_done: OnDone, on_error: OnError,
              soft: float | None, hard: float | None) -> Any:
        return self._pool.apply_async(
            run_payload, (payload,), callback=on_done,
            error_callback=functools.partial(_unwrap_error, on_error),
            soft_timeout=soft, timeout=hard)

    def pids(self) -> list[int]:
        return [p.pid for p in self._pool._pool] if self._pool else []

    def kill(self, handle: Any, signum: int) -> bool:
        pids = handle.worker_pids() if handle is not None else []
        for pid in pids:
            self._pool.terminate_job(pid, TERMINATE_SIGNAL if signum == signal.SIGTERM else signum)
        return bool(pids)

    def resize(self, size: int) -> None:
        """Grow at once; shrink by idle processes only (as many as are idle now)."""
        if size > self.concurrency:
            self._pool.grow(size - self.concurrency)
        elif size < self.concurrency:
            try:
                self._pool.shrink(self.concurrency - size)
            except ValueError:  # fewer idle processes than asked: those were stopped
                pass
        self.concurrency = self._pool._processes

    def stop(self) -> None:
        """Let the (idle) processes exit on their own; kill them if that takes long.

        Only the processes are waited for: billiard's helper threads are daemons whose
        own join polls slowly, and the worker has already settled every job."""
        pool = self._pool
        if pool is None:
            return
        pool.close()
        for _ in pool._pool:  # the end-of-work sentinel, now (billiard's thread polls slowly)
            pool._quick_put(None)
        deadline = time.monotonic() + STOP_WAIT
        for process in list(pool._pool):
            process.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(process.is_alive() for process in pool._pool):
            self.terminate()
        else:
            pool._terminate.cancel()

    def terminate(self) -> None:
        """Kill every process now.

        billiard's own terminate takes the job queue's lock and then relies on SIGTERM to
        end processes waiting for it; ours ignore SIGTERM (see :func:`use_app`), and one
        killed while waiting would hold that lock forever. So processes are killed here
        and billiard's cleanup is skipped.
        """
        pool = self._pool
        if pool is None:
            return
        pool._worker_handler.terminate()  # no replacements for the processes killed here
        for process in list(pool._pool):
            try:
                os.kill(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for process in list(pool._pool):
            process.join(timeout=5)
        pool._terminate.cancel()


class ThreadsPool(Pool):
    def __init__(self, app: Flowq, concurrency: int):
        self.app = app
        self.concurrency = concurrency
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        use_app(self.app)
        self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="flowq-task")

    def apply(self, payload: Payload, on_done: OnDone, on_error: OnError,
              soft: float | None, hard: float | None) -> Any:
        assert self._executor is not None
        future = self._executor.submit(run_payload, payload)

        def finished(done: Future[Outcome]) -> None:
            error = done.exception()
            if error is None:
                on_done(done.result())
            else:
                on_error(error)

        future.add_done_callback(finished)
        return future

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def terminate(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class SoloPool(Pool):
    def __init__(self, app: Flowq):
        self.app = app
        self.concurrency = 1
        self._lock = threading.Lock()

    def start(self) -> None:
        use_app(self.app)
        signalling.process_started()  # the worker's process is the pool's, as in Celery

    def apply(self, payload: Payload, on_done: OnDone, on_error: OnError,
              soft: float | None, hard: float | None) -> Any:
        with self._lock:
            try:
                outcome = run_payload(payload)
            except BaseException as exc:  # noqa: BLE001 - reported to the worker
                on_error(exc)
                return None
        on_done(outcome)
        return None


def make_pool(kind: str, app: Flowq, concurrency: int, max_tasks_per_child: int | None = None,
              max_memory_per_child: int | None = None) -> Pool:
    """The pool named ``kind``: prefork, threads or solo. Only prefork replaces its
    processes, so only it takes ``max_memory_per_child`` (KiB)."""
    from flowq.exceptions import ConfigurationError

    if kind == "prefork":
        return PreforkPool(app, concurrency, max_tasks_per_child, max_memory_per_child)
    if max_memory_per_child:
        raise ConfigurationError(f"max_memory_per_child needs the prefork pool (the {kind} "
                                 f"pool runs tasks in the worker's own process)")
    if kind == "threads":
        return ThreadsPool(app, concurrency)
    if kind == "solo":
        return SoloPool(app)
    raise ConfigurationError(f"unknown pool {kind!r}; use prefork, threads or solo")
