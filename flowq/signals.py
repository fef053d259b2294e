"""Signals: Celery's hooks, with Celery's names, senders and arguments.

Connect a function and flowq calls it when the event happens, in the process where
Celery would call it::

    from flowq.signals import task_failure

    @task_failure.connect
    def report(sender=None, task_id=None, exception=None, einfo=None, **kwargs):
        tracker.capture(exception, task=sender.name, traceback=einfo.traceback)

``connect(receiver, sender=None, weak=True, dispatch_uid=None, retry=False)`` also works
as ``@signal.connect(sender=add)``; receivers take keyword arguments (``sender``,
``signal`` and the signal's own) and must accept ``**kwargs``, so new arguments never
break them. ``send`` returns ``[(receiver, reply), ...]``; a receiver that raises is
logged (logger ``flowq.signals``) and its exception is its reply: a broken receiver
never breaks a worker. With nothing connected a signal costs one attribute check.

The table of signals (sender, arguments, process) is in ``docs/signals.md``; the places
the runtime sends them are :mod:`flowq.runtime.signalling`.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

from flowq.exceptions import ConfigurationError

log = logging.getLogger("flowq.signals")

R = TypeVar("R", bound=Callable[..., Any])
#: Longest wait, in seconds, between two tries of a receiver connected with ``retry=True``.
RETRY_MAX_INTERVAL = 30.0


def _identity(target: Any) -> Hashable:
    """What tells senders and receivers apart: a string by its value (task names are
    senders), a bound method by its object and function, anything else by identity (a
    proxy, such as a ``shared_task``, by the object it stands for now, as in Celery)."""
    if target is None or isinstance(target, (str, bytes)):
        return target
    current = getattr(type(target), "_get_current_object", None)
    if current is not None:
        target = current(target)
    if hasattr(target, "__func__") and hasattr(target, "__self__"):
        return (id(target.__self__), id(target.__func__))
    return id(target)


def _takes_keywords(receiver: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(receiver).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: trust it
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


class _Connection:
    """One connected receiver: its key, the sender it listens to, and a (weak) ref."""

    __slots__ = ("key", "ref", "sender", "weak")

    def __init__(self, key: Hashable, sender: Hashable, receiver: Callable[..., Any],
                 weak: bool):
        self.key = key
        self.sender = sender
        self.weak = weak
        if weak:
            bound = hasattr(receiver, "__func__") and hasattr(receiver, "__self__")
            self.ref: Any = (weakref.WeakMethod(receiver) if bound  # type: ignore[arg-type]
                             else weakref.ref(receiver))
        else:
            self.ref = receiver

    def receiver(self) -> Callable[..., Any] | None:
        return self.ref() if self.weak else self.ref  # type: ignore[no-any-return]


class Signal:
    """A named event that receivers connect to and the runtime sends (Celery's API)."""

    def __init__(self, name: str, providing_args: Iterable[str] = ()):
        self.name = name
        self.providing_args = frozenset(providing_args)
        #: Connected receivers; replaced (never changed in place) under the lock, so
        #: :meth:`send` reads it without locking. Empty means sending costs nothing.
        self.receivers: tuple[_Connection, ...] = ()
        self._lock = threading.Lock()

    # -- connecting -------------------------------------------------------------------------

    def connect(self, receiver: R | None = None, sender: Any = None, weak: bool = True,
                dispatch_uid: Hashable | None = None, retry: bool = False) -> Any:
        """Connect ``receiver`` (for ``sender`` only, if given); as a decorator, with or
        without arguments. Connecting the same receiver (or ``dispatch_uid``) for the
        same sender twice keeps one. ``weak`` (the default) holds the receiver by a weak
        reference, as Celery does: a receiver nothing else refers to (a lambda made on
        the spot) disappears; pass ``weak=False`` for those. ``retry`` calls a raising
        receiver again (after 1 s, then up to :data:`RETRY_MAX_INTERVAL`) until it
        succeeds."""
        def decorate(fn: R) -> R:
            self._connect(fn, sender, weak, dispatch_uid, retry)
            return fn

        return decorate(receiver) if receiver is not None else decorate

    def _connect(self, receiver: Callable[..., Any], sender: Any, weak: bool,
                 dispatch_uid: Hashable | None, retry: bool) -> None:
        if not callable(receiver):
            raise ConfigurationError(f"signal {self.name}: a receiver must be callable, "
                                     f"got {receiver!r}")
        if not _takes_keywords(receiver):
            raise ConfigurationError(
                f"signal {self.name}: receiver {getattr(receiver, '__qualname__', receiver)!r} "
                f"must accept **kwargs (signals pass keyword arguments, and may add more); "
                f"write it as def {getattr(receiver, '__name__', 'receiver')}(sender=None, "
                f"**kwargs)")
        key = dispatch_uid if dispatch_uid is not None else _identity(receiver)
        if retry:
            receiver, weak = _retrying(receiver, self.name), False
        connection = _Connection(key, _identity(sender), receiver, weak)
        with self._lock:
            live = self._live()
            if not any(c.key == key and c.sender == connection.sender for c in live):
                live = (*live, connection)
            self.receivers = live

    def disconnect(self, receiver: Callable[..., Any] | None = None, sender: Any = None,
                   dispatch_uid: Hashable | None = None) -> bool:
        """Disconnect a receiver (by itself or its ``dispatch_uid``) from ``sender``;
        whether one was connected."""
        key = dispatch_uid if dispatch_uid is not None else _identity(receiver)
        target = _identity(sender)
        with self._lock:
            live = self._live()
            kept = tuple(c for c in live if not (c.key == key and c.sender == target))
            self.receivers = kept
        return len(kept) != len(live)

    def _live(self) -> tuple[_Connection, ...]:
        return tuple(c for c in self.receivers if c.receiver() is not None)

    # -- sending ----------------------------------------------------------------------------

    def has_listeners(self, sender: Any = None) -> bool:
        """Whether a live receiver would get a signal sent by ``sender``."""
        return bool(self._matching(sender))

    def _matching(self, sender: Any) -> list[Callable[..., Any]]:
        wanted = _identity(sender)
        found = []
        dead = False
        for connection in self.receivers:
            receiver = connection.receiver()
            if receiver is None:
                dead = True
            elif connection.sender is None or connection.sender == wanted:
                found.append(receiver)
        if dead and self._lock.acquire(blocking=False):  # drop receivers collected since
            try:
                self.receivers = self._live()
            finally:
                self._lock.release()
        return found

    def send(self, sender: Any, **named: Any) -> list[tuple[Callable[..., Any], Any]]:
        """Call every receiver for ``sender`` with ``named``; return ``[(receiver,
        reply)]``. A receiver that raises is logged and its exception is its reply."""
        if not self.receivers:
            return []
        replies: list[tuple[Callable[..., Any], Any]] = []
        for receiver in self._matching(sender):
            try:
                reply = receiver(signal=self, sender=sender, **named)
            except Exception as exc:  # a receiver must not break the sender
                log.exception("Signal receiver %r of %s raised", receiver, self.name)
                reply = exc
            replies.append((receiver, reply))
        return replies

    send_robust = send  # Django's name; Celery's send is already robust

    def __repr__(self) -> str:
        return f"<Signal: {self.name} ({len(self.receivers)} receivers)>"


def _retrying(receiver: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``receiver`` called again after each failure, waiting longer each time."""
    def call(**named: Any) -> Any:
        wait = 1.0
        while True:
            try:
                return receiver(**named)
            except Exception as exc:  # noqa: BLE001 - retried, as connect(retry=True) asks
                log.error("Signal receiver %r of %s raised %r; retrying in %.0fs",
                          receiver, name, exc, wait)
                time.sleep(wait)
                wait = min(wait * 2, RETRY_MAX_INTERVAL)

    call.__wrapped__ = receiver  # type: ignore[attr-defined]
    return call


# -- tasks: publishing (in the process that sends) -----------------------------------------

#: Before a task message is sent; ``headers`` and ``properties`` may be changed (headers
#: added here reach the task as ``self.request.headers`` and ``self.request.<name>``).
before_task_publish = Signal("before_task_publish", {
    "body", "exchange", "routing_key", "headers", "properties", "declare", "retry_policy"})
#: After a task message was sent to the broker (or stored until its eta).
after_task_publish = Signal("after_task_publish", {"body", "exchange", "routing_key", "headers"})

# -- tasks: in the worker's main process --------------------------------------------------------

#: A task message arrived, passed its checks and waits for a pool process.
task_received = Signal("task_received", {"request"})
#: A message that is not a valid task message was dead-lettered.
task_rejected = Signal("task_rejected", {"message", "exc"})
#: A message for a task this worker does not know was dead-lettered.
task_unknown = Signal("task_unknown", {"message", "exc", "name", "id"})
#: A task was revoked (or expired) before or while it ran.
task_revoked = Signal("task_revoked", {"request", "terminated", "signum", "expired"})

# -- tasks: in the pool process running the task -----------------------------------------------

task_prerun = Signal("task_prerun", {"task_id", "task", "args", "kwargs"})
task_postrun = Signal("task_postrun", {"task_id", "task", "args", "kwargs", "retval", "state"})
task_success = Signal("task_success", {"result"})
task_retry = Signal("task_retry", {"request", "reason", "einfo"})
#: A task failed: in the pool process when it raised, in the main process when its
#: process died or hit its hard time limit.
task_failure = Signal("task_failure", {
    "task_id", "exception", "args", "kwargs", "traceback", "einfo"})

# -- workers ---------------------------------------------------------------------------------------

#: Before the worker starts its pool (main process).
worker_init = Signal("worker_init")
#: The worker consumes and answers remote control (main process).
worker_ready = Signal("worker_ready")
#: In each pool process when it starts (and in the worker process of the solo pool).
worker_process_init = Signal("worker_process_init")
#: In each pool process just before it exits (not when it is killed).
worker_process_shutdown = Signal("worker_process_shutdown", {"pid", "exitcode"})
#: The worker is about to exit: its pool has stopped (main process).
worker_shutdown = Signal("worker_shutdown")

# -- beat and logging ------------------------------------------------------------------------------

#: ``flowq beat`` starts (or the beat a worker embeds with ``-B``).
beat_init = Signal("beat_init")
#: Also sent, after :data:`beat_init`, by the beat a worker embeds with ``-B``.
beat_embedded_init = Signal("beat_embedded_init")
#: With a receiver connected, ``flowq worker`` and ``flowq beat`` leave logging alone.
setup_logging = Signal("setup_logging", {"loglevel", "logfile", "format", "colorize"})
#: After flowq configured the root logger.
after_setup_logger = Signal("after_setup_logger", {
    "logger", "loglevel", "logfile", "format", "colorize"})

__all__ = [
    "Signal", "after_setup_logger", "after_task_publish", "beat_embedded_init", "beat_init",
    "before_task_publish", "setup_logging", "task_failure", "task_postrun", "task_prerun",
    "task_received", "task_rejected", "task_retry", "task_revoked", "task_success",
    "task_unknown", "worker_init", "worker_process_init", "worker_process_shutdown",
    "worker_ready", "worker_shutdown",
]
