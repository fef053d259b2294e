"""The periodic scheduler ("beat"): sends the entries of ``beat_schedule`` when they are due.

::

    app.conf.beat_schedule = {
        "add-every-30s": {"task": "tasks.add", "schedule": 30.0, "args": (1, 2)},
        "report-at-nine": {"sig": fetch.s() | report.s(), "schedule": crontab(0, 9)},
    }

One beat schedules at a time. It holds a lease in the result backend, renewed on every
turn of its loop (at least every third of the lease's TTL); a second beat stands by,
asks for the lease as often, and takes over within a TTL of the first one dying.

State: the last run of every entry, as a JSON blob in the result backend
(``{"version": 1, "last_run_at": {name: ISO-8601 UTC}}``), written after each send and
read whenever a beat becomes active, so a restart or a takeover neither repeats nor
skips a run. A run missed while no beat was active is sent once, not once per slot.
A beat that dies between publishing and saving (milliseconds) leaves that run to be
sent again: periodic runs are at least once, like every task.

Times are aware UTC datetimes; only crontabs look at wall clocks, in their own ``tz`` or,
for crontabs made without one, in the app's ``timezone`` (DST: see flowq.schedules).
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timezone, tzinfo
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from flowq.canvas.frozen import FrozenDict
from flowq.canvas.signature import Canvas, Signature
from flowq.exceptions import BackendError, ConfigurationError, FlowqError
from flowq.runtime import signalling
from flowq.schedules import crontab, maybe_schedule

if TYPE_CHECKING:
    from flowq.app import Flowq

log = logging.getLogger("flowq.beat")

#: Seconds a lease lasts without renewal: how long a standby waits for a dead beat.
#: Shortest sleep, so a schedule that always answers "0 seconds" cannot spin the loop.
_MIN_SLEEP = 0.01
#: Seconds ``flowq worker -B`` waits for its beat thread to finish on the way out.
_THREAD_JOIN_TIMEOUT = 10.0
_STATE_VERSION = 1
_ENTRY_KEYS = ("task", "sig", "schedule", "args", "kwargs", "options")


def utc_now() -> datetime:
    """The current time as an aware UTC datetime (beat's default clock)."""
    return datetime.now(timezone.utc)


def lease_key(app: Flowq) -> str:
    """The backend lease only the active beat of ``app`` holds."""
    return f"beat:{app.main or 'default'}"


def state_key(app: Flowq) -> str:
    """The backend blob with the last run of every entry of ``app``."""
    return f"beat:{app.main or 'default'}:state"


# -- entries ----------------------------------------------------------------------------------


class DueCheck(Protocol):
    """All beat asks of a schedule (:class:`flowq.schedules.Schedule` offers more)."""

    def is_due(self, last_run_at: datetime | None, now: datetime) -> tuple[bool, float]: ...


@attrs.frozen
class Entry:
    """One checked ``beat_schedule`` entry: what to send, with what, and when."""

    name: str
    schedule: DueCheck
    canvas: Canvas
    args: tuple[Any, ...]
    kwargs: FrozenDict[str, Any]
    options: FrozenDict[str, Any]
    label: str  # the task (or the workflow's tasks) for log lines

    def is_due(self, last_run_at: datetime | None, now: datetime) -> tuple[bool, float]:
        return _answer(self.schedule.is_due(last_run_at, now))


def load_entries(app: Flowq, now: datetime | None = None) -> list[Entry]:
    """The entries of ``app.conf.beat_schedule``, each checked.

    Raises ConfigurationError with one line naming the first bad entry (a task the app
    does not register included), or a bad ``timezone`` setting, so a broken schedule
    stops beat at start, not at 3 a.m.
    """
    tz = app_timezone(app.conf.timezone)
    moment = now or utc_now()
    entries = []
    for name, spec in app.conf.beat_schedule.items():
        try:
            entries.append(_entry(app, str(name), spec, tz, moment))
        except FlowqError as exc:
            detail = " ".join(str(exc).split())  # InvalidWorkflow lists problems on lines
            raise ConfigurationError(f"beat_schedule entry {name!r}: {detail}") from None
    return entries


def app_timezone(name: str) -> tzinfo:
    """The tzinfo of the ``timezone`` setting; ConfigurationError for an unknown zone."""
    if name == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(
            f"setting 'timezone' is {name!r}, which is not a known time zone (expected a "
            "key like 'Europe/Berlin')") from None


def _entry(app: Flowq, name: str, spec: Any, tz: tzinfo, now: datetime) -> Entry:
    """Check one entry's keys, schedule, workflow, arguments and options."""
    if not isinstance(spec, Mapping):
        raise ConfigurationError(
            f"must be a dict with 'task' (or 'sig') and 'schedule', not {type(spec).__name__}")
    unknown = [key for key in spec if key not in _ENTRY_KEYS]
    if unknown:
        raise ConfigurationError(
            f"unknown key {unknown[0]!r}; an entry takes {', '.join(_ENTRY_KEYS)}")
    if "schedule" not in spec:
        raise ConfigurationError("has no 'schedule' (seconds, a timedelta or a crontab)")
    schedule = _schedule(spec["schedule"], tz, now)
    canvas = _canvas(app, spec)
    args, kwargs, options = spec.get("args", ()), spec.get("kwargs", {}), spec.get("options", {})
    if not isinstance(args, (list, tuple)):
        raise ConfigurationError(f"'args' must be a list or tuple, not {type(args).__name__}")
    for key, value in (("kwargs", kwargs), ("options", options)):
        if not isinstance(value, Mapping):
            raise ConfigurationError(f"{key!r} must be a dict, not {type(value).__name__}")
    # Unknown tasks and bad arguments or options fail now, not as dead letters at each run.
    app.compile(canvas, args, kwargs, options, strict=True)
    return Entry(name, schedule, canvas, tuple(args), FrozenDict(kwargs), FrozenDict(options),
                 describe(canvas))


def _canvas(app: Flowq, spec: Mapping[str, Any]) -> Canvas:
    """The entry's workflow: ``task`` (a name) or ``sig`` (any signature or workflow)."""
    if ("task" in spec) == ("sig" in spec):
        raise ConfigurationError("needs exactly one of 'task' (a task name) or 'sig' "
                                 "(a signature or workflow)")
    if "sig" in spec:
        if not isinstance(spec["sig"], Canvas):
            raise ConfigurationError(
                f"'sig' must be a signature or workflow, not {type(spec['sig']).__name__}")
        return spec["sig"]
    if not isinstance(spec["task"], str) or not spec["task"]:
        raise ConfigurationError(f"'task' must be a task name, not {spec['task']!r}")
    return app.signature(spec["task"])


def describe(canvas: Canvas) -> str:
    """A short label for logs: the task name, or e.g. ``chain of tasks.a, tasks.b``."""
    if isinstance(canvas, Signature):
        return canvas.task
    names = dict.fromkeys(sig.task for sig in canvas.signatures())
    return f"{type(canvas).__name__.lower()} of {', '.join(names)}"


# -- schedules ------------------------------------------------------------------------------


def _schedule(value: Any, tz: tzinfo, now: datetime) -> DueCheck:
    """``value`` as a flowq schedule, in the app's time zone, asked once to prove it works."""
    schedule: DueCheck = maybe_schedule(value)
    if isinstance(schedule, crontab):
        schedule = schedule.with_default_tz(tz)
    elif _takes_only_last_run_at(schedule.is_due):
        schedule = CelerySchedule(schedule)
    try:
        _answer(schedule.is_due(None, now))
    except ConfigurationError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of user code is a bad schedule
        raise ConfigurationError(
            f"schedule {value!r} failed when asked is_due(): {type(exc).__name__}: {exc}"
        ) from None
    return schedule


def _takes_only_last_run_at(is_due: Callable[..., Any]) -> bool:
    """Whether ``is_due`` is Celery's ``is_due(last_run_at)`` rather than flowq's
    ``is_due(last_run_at, now)``; ConfigurationError for any other signature."""
    try:
        parameters = list(inspect.signature(is_due).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: assume flowq's form
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    if not positional or len(required) > 2:
        raise ConfigurationError(
            f"is_due{inspect.signature(is_due)} must take (last_run_at, now), or Celery's "
            "(last_run_at)")
    return len(positional) == 1


def _answer(answer: Any) -> tuple[bool, float]:
    """An ``is_due`` answer as ``(due, seconds)``; ConfigurationError if it is not one."""
    try:
        due, seconds = answer
        return bool(due), float(seconds)
    except (TypeError, ValueError):
        raise ConfigurationError(
            f"is_due() must return (due, next_in_seconds), got {answer!r}") from None


class CelerySchedule:
    """A schedule with Celery's ``is_due(last_run_at)``, asked with flowq's arguments.

    Celery never passes None: an entry that never ran counts from when beat first saw
    it, so this adapter remembers that moment (per beat process) and passes it instead.
    The schedule reads its own clock, as it does under Celery.
    """

    def __init__(self, inner: Any):
        self.inner = inner
        self._first_seen: datetime | None = None

    def is_due(self, last_run_at: datetime | None, now: datetime) -> tuple[bool, float]:
        if last_run_at is None:
            self._first_seen = self._first_seen or now
            last_run_at = self._first_seen
        return self.inner.is_due(last_run_at)

    def __repr__(self) -> str:
        return repr(self.inner)


# -- the service ------------------------------------------------------------------------------


class Beat:
    """The scheduler loop of one process: lease, state and sends.

    ``clock`` (aware datetimes) and ``sleep`` are injectable for tests; by default
    :meth:`stop` interrupts the sleep. Raises ConfigurationError for a bad schedule.
    """

    def __init__(self, app: Flowq, *, lease_ttl: float | None = None,
                 max_interval: float | None = None,
                 clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], object] | None = None):
        max_interval = app.conf.beat_max_loop_interval if max_interval is None else max_interval
        lease_ttl = app.conf.beat_lease_ttl if lease_ttl is None else lease_ttl
        for option, value in (("lease_ttl", lease_ttl), ("max_interval", max_interval)):
            if not value > 0:
                raise ConfigurationError(f"beat {option} must be positive, got {value!r}")
        self.app = app
        self.entries = load_entries(app, clock())
        self.lease_ttl = float(lease_ttl)
        # Renew well inside the TTL, so one slow turn does not hand the lease over.
        self.interval = min(float(max_interval), self.lease_ttl / 3)
        self.lease_key, self.state_key = lease_key(app), state_key(app)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.active: bool | None = None  # None until the first turn
        self.last_run: dict[str, datetime] = {}
        # Held for every turn; beat_thread makes fork() wait for it (see there).
        self.turn_lock = threading.Lock()
        self._clock = clock
        self._stopping = threading.Event()
        self._sleep = sleep or self._stopping.wait
        self._renewed_at = 0.0

    # -- running ----------------------------------------------------------------------------

    def run(self, embedded: bool = False) -> None:
        """Schedule until :meth:`stop`; give the lease back on the way out. ``embedded``:
        this beat runs inside a worker (``-B``)."""
        signalling.beat_starting(self, embedded)
        with self.turn_lock:
            log.info("%s", self.banner())
        if not self.entries:
            log.warning("Scheduler: beat_schedule is empty; nothing will be sent")
        try:
            while not self._stopping.is_set():
                delay = self.tick()
                if not self._stopping.is_set():
                    self._sleep(delay)
        finally:
            with self.turn_lock:
                self._release()

    def stop(self) -> None:
        """Ask :meth:`run` to return (safe from a signal handler or another thread)."""
        self._stopping.set()

    def tick(self) -> float:
        """One turn: hold the lease, send what is due; return the seconds to sleep."""
        with self.turn_lock:
            return self._turn()

    def _turn(self) -> float:
        try:
            if not self._hold_lease():
                return self.interval
            return max(_MIN_SLEEP, min(self._send_due(), self.interval))
        except BackendError as exc:
            self._stand_by(f"result backend error ({exc})")
        except Exception as exc:  # noqa: BLE001 - beat outlives bugs; log them loudly
            log.exception("Scheduler: unexpected %s", type(exc).__name__)
            self._stand_by(f"unexpected {type(exc).__name__}")
        return self.interval

    # -- the lease ------------------------------------------------------------------------

    def _hold_lease(self) -> bool:
        """Take or renew the lease; log and load state on a change of role."""
        held = self.app.backend.acquire_lease(self.lease_key, self.owner, self.lease_ttl)
        self._renewed_at = time.monotonic()
        if held and not self.active:
            self.last_run = self._load_state()  # another beat may have run entries since
            self.active = True
            log.info("Scheduler: active (holding lease %r as %s)", self.lease_key, self.owner)
        elif not held and self.active is not False:
            self._stand_by("another beat holds the lease")
        return held

    def _stand_by(self, reason: str) -> None:
        self.active = False
        log.info("Scheduler: standby (%s); taking over if lease %r lapses (ttl %gs)",
                 reason, self.lease_key, self.lease_ttl)

    def _release(self) -> None:
        if self.active:
            try:
                self.app.backend.release_lease(self.lease_key, self.owner)
            except Exception as exc:  # noqa: BLE001 - it lapses after the TTL anyway
                log.warning("Scheduler: could not release lease %r: %s", self.lease_key, exc)
        self.active = False
        log.info("Scheduler: stopped")

    # -- sending --------------------------------------------------------------------------

    def _send_due(self) -> float:
        """Send every due entry; return the seconds until the next one may be due."""
        now = self._clock()
        wait = self.interval
        for entry in self.entries:
            due, next_in = self._ask(entry, now)
            if due:
                stale = time.monotonic() - self._renewed_at > self.interval
                if stale and not self._hold_lease():
                    break  # a slow turn lost the lease: the new holder sends the rest
                self._send(entry, now)
            wait = min(wait, next_in)
        return wait

    def _ask(self, entry: Entry, now: datetime) -> tuple[bool, float]:
        try:
            return entry.is_due(self.last_run.get(entry.name), now)
        except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
            log.exception("Scheduler: schedule of %s failed; asking again in %gs",
                          entry.name, self.interval)
            return False, self.interval

    def _send(self, entry: Entry, now: datetime) -> None:
        """Send ``entry`` and record the run; a failed send is retried on a later turn."""
        log.info("Scheduler: sending due task %s (%s)", entry.name, entry.label)
        try:
            self.app.send(entry.canvas, entry.args, entry.kwargs, **entry.options)
        except Exception as exc:  # noqa: BLE001 - broker down, message too large, ...
            log.error("Scheduler: could not send %s (%s): %s: %s; retrying on a later turn",
                      entry.name, entry.label, type(exc).__name__, exc)
            return
        self.last_run[entry.name] = now
        self._save_state()

    # -- state ----------------------------------------------------------------------------

    def _load_state(self) -> dict[str, datetime]:
        """The last runs saved by whichever beat was active; {} if none or unreadable."""
        raw = self.app.backend.get_blob(self.state_key)
        if raw is None:
            return {}
        names = {entry.name for entry in self.entries}
        try:
            doc = json.loads(raw)
            if doc.get("version") != _STATE_VERSION:
                raise ValueError(f"version {doc.get('version')!r}, expected {_STATE_VERSION}")
            return {name: datetime.fromisoformat(at)
                    for name, at in doc["last_run_at"].items() if name in names}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("Scheduler: ignoring unreadable state %r (%s); every entry starts "
                        "as never run", self.state_key, exc)
            return {}

    def _save_state(self) -> None:
        runs = {name: at.astimezone(timezone.utc).isoformat()
                for name, at in sorted(self.last_run.items())}
        doc = {"version": _STATE_VERSION, "last_run_at": runs}
        self.app.backend.put_blob(self.state_key, json.dumps(doc).encode())

    # -- display ----------------------------------------------------------------------------

    def banner(self) -> str:
        return (f"flowq beat (pid {os.getpid()}): {len(self.entries)} entries, lease "
                f"{self.lease_key!r} (ttl {self.lease_ttl:g}s), timezone "
                f"{self.app.conf.timezone}, backend {self.app.backend.url}")


@contextlib.contextmanager
def beat_thread(beat: Beat) -> Iterator[threading.Thread]:
    """Run ``beat`` in a daemon thread while the body runs (``flowq worker -B``).

    The worker forks pool children (at start, and to replace one) while the thread runs.
    A child forked in the middle of a turn would inherit the locks the turn holds (the
    app's lock, SQLite's mutexes, ...) and hang on them, so every fork waits for the
    current turn to end. Handlers cannot be unregistered; once beat stops they are free.
    """
    lock = beat.turn_lock
    os.register_at_fork(before=lock.acquire, after_in_parent=lock.release,
                        after_in_child=lock.release)
    thread = threading.Thread(target=beat.run, kwargs={"embedded": True}, name="flowq-beat",
                              daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        beat.stop()
        thread.join(_THREAD_JOIN_TIMEOUT)
        beat.app.close()  # the worker closed them first; the beat may have reopened them


__all__ = ["Beat", "CelerySchedule", "DueCheck", "Entry", "app_timezone",
           "beat_thread", "describe", "lease_key", "load_entries", "state_key", "utc_now"]
