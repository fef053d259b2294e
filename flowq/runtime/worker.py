"""The worker: a consumer in the main process feeding an execution pool.

Lifecycle: print a short banner, connect (each failed attempt is logged; after
``broker_connection_max_retries`` of them the worker gives up with one line naming the
broker, exit 69), declare queues (and their dead-letter queues), log that it is ready,
then loop: take messages, hand them to free pool processes, settle finished ones, move
due delayed messages to their queues, refresh revocations, autoscale. Signals:

* SIGTERM / SIGINT: warm shutdown. Stop consuming, give every message not yet started
  back to the broker at once, let running tasks finish (and be acked), exit 0.
* a second SIGTERM / SIGINT, or SIGQUIT: cold shutdown. Kill running tasks: a late-acked
  one goes back to its queue, an early-acked one is recorded as failed
  (WorkerLostError: its errbacks run, its workflow's later steps fail). Exit 1.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kombu import Consumer

from flowq.exceptions import BrokerUnavailable, ConfigurationError, FlowqError
from flowq.runtime import broker, events, logs, remote, signalling
from flowq.runtime.autoscale import Autoscaler
from flowq.runtime.banner import banner, warn_about_a_local_backend
from flowq.runtime.consumer import Intake, display_name
from flowq.runtime.hooks import hooks
from flowq.runtime.logfile import expand
from flowq.runtime.message import Request
from flowq.runtime.pidfile import Pidfile
from flowq.runtime.metrics import WorkerMetrics
from flowq.runtime.pool import Pool, make_pool
from flowq.runtime.publisher import decode_delayed
from flowq.runtime.revoked_stamps import RevokedStamps

if TYPE_CHECKING:
    from flowq.app import Flowq

log = logging.getLogger("flowq.worker")

#: How often the main loop does its housekeeping (seconds).
DELAY_SWEEP_INTERVAL = 0.2
REVOKED_REFRESH_INTERVAL = 1.0
AUTOSCALE_INTERVAL = 1.0
#: In the line the worker logs once it consumes and answers remote control: what a
#: supervisor or a test waits for (the banner comes earlier, before it connects).
READY = " ready (connected to "
#: The exit code of a worker that could not reach its broker at start (sysexits'
#: EX_UNAVAILABLE, as the command line uses for every unreachable service).
EXIT_UNAVAILABLE = 69
#: Most rate-limited messages a worker holds beyond its prefetch window.
MAX_HELD = 1000
DELAY_LEASE = 30.0


def expand_hostname(name: str | None) -> str:
    """The node name ``-n name`` gives, with Celery's host codes expanded.

    ``%h`` is this machine's host name with its domain (``box.example.com``), ``%n`` the
    host name alone (``box``) and ``%d`` the domain (``example.com``); other codes, such
    as ``%i`` and ``%I`` which mean something in log file names, stay as they are. A
    missing name part becomes ``flowq`` and a missing host part ``%h``: no name gives
    ``flowq@box.example.com`` and ``-n w2`` gives ``w2@box.example.com`` (Celery would
    make that ``celery@w2``; keeping the host keeps names unique across machines).
    """
    host = socket.gethostname()
    short, _, domain = host.partition(".")
    local, _, where = (name or "").partition("@")
    node = f"{local or 'flowq'}@{where or '%h'}"
    return node.replace("%h", host).replace("%n", short).replace("%d", domain)


class Worker:
    """One worker process (plus its pool)."""

    def __init__(self, app: Flowq, *, concurrency: int | None = None,
                 queues: Sequence[str] | None = None, hostname: str | None = None,
                 pool: str | None = None, prefetch_multiplier: int | None = None,
                 max_tasks_per_child: int | None = None, app_path: str | None = None,
                 autoscale: tuple[int, int] | None = None,
                 max_memory_per_child: int | None = None, pidfile: str | None = None):
        """``autoscale`` is (MAX, MIN) processes; ``max_memory_per_child`` is in KiB;
        ``pidfile`` may hold the node name codes of log files (``%n``)."""
        app.finalize()  # every task registered before the pool forks
        conf = app.conf
        self.app = app
        self.app_path = app_path or app.main or "?"
        self.pool_kind = pool or conf.worker_pool
        self.hostname = expand_hostname(hostname)
        self.autoscaler = Autoscaler(*autoscale, keepalive=conf.worker_autoscale_keepalive) \
            if autoscale else None
        if self.autoscaler and self.pool_kind != "prefork":
            raise ConfigurationError(f"autoscale needs the prefork pool; the {self.pool_kind} "
                                     f"pool cannot be resized")
        self.concurrency = 1 if self.pool_kind == "solo" else self.autoscaler.min if (
            self.autoscaler) else (concurrency or conf.worker_concurrency or os.cpu_count() or 1)
        self.queues = list(queues or [conf.task_default_queue])
        self.multiplier = prefetch_multiplier or conf.worker_prefetch_multiplier
        self.prefetch = self._window()
        self.max_tasks_per_child = max_tasks_per_child or conf.worker_max_tasks_per_child
        self.max_memory_per_child = max_memory_per_child or conf.worker_max_memory_per_child
        self.pidfile = Pidfile(expand(pidfile, self.hostname, 0)) if pidfile else None
        self.pool: Pool = make_pool(self.pool_kind, app, self.concurrency,
                                    self.max_tasks_per_child, self.max_memory_per_child)
        self.intake = Intake(app, self.pool, self.hostname, self._revoked_reason)
        self.events = events.WorkerEvents(self)  # does nothing unless events are on
        self.metrics: WorkerMetrics | None = None
        if conf.worker_metrics_port is not None:  # raises MissingExtra without the extra
            self.metrics = WorkerMetrics(self)
            self.intake.observers.append(self.metrics)
            self.intake.events = hooks(self.intake.events, self.intake.observers)
        self.revoked_ids: set[str] = set()
        self.revoked_stamps = RevokedStamps()
        self.warm = False
        self.cold = False
        self.connection: Any = None
        self.consumer: Any = None
        self.control: Any = None
        self.started_at = time.monotonic()
        self._prefetch_applied = self.prefetch
        self._quorum = broker.quorum_queues(conf)
        self._next_sweep = 0.0
        self._next_revoked = 0.0
        self._next_autoscale = 0.0

    # -- running ----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until shut down; return the process exit code: 0 after a warm shutdown, 1
        after a cold one, 69 when the broker cannot be reached at start.

        Raises ConfigurationError, before anything else, if the pidfile is another
        running worker's.
        """
        if self.pidfile:
            self.pidfile.acquire()
        try:
            return self._run()
        finally:
            if self.pidfile:
                self.pidfile.release()

    def _run(self) -> int:
        signalling.worker_starting(self)
        self._install_signals()
        log.info("%s", banner(self))
        warn_about_a_local_backend(self.app)
        try:
            connection = self._open_connection(self._attempts_at_start())
        except BrokerUnavailable as exc:
            log.error("%s", exc)
            self.app.close()
            return EXIT_UNAVAILABLE
        if connection is None:  # stopped while waiting for the broker
            self.app.close()
            return 1 if self.cold else 0
        if self.metrics is not None:
            conf = self.app.conf
            self.metrics.serve(conf.worker_metrics_host, conf.worker_metrics_port)
        self.pool.start()
        self._refresh_revoked()
        self.events.start()
        announced = False
        try:
            while not self.cold and connection is not None:
                try:
                    self._connect(connection)
                    if not announced:  # it consumes and answers remote control
                        log.info("Worker %s%s%s)", self.hostname, READY,
                                 broker.describe(self.app.conf))
                        signalling.worker_ready(self.intake)
                        announced = True
                    self._loop()
                    break
                except self._connection_errors() as exc:
                    connection = self._reconnect_after(exc)
        finally:
            self._stop()
        return 1 if self.cold else 0

    def _attempts_at_start(self) -> int:
        conf = self.app.conf
        return conf.broker_connection_max_retries if conf.broker_connection_retry else 0

    def _open_connection(self, retries: int | None, warm_stops: bool = True) -> Any:
        """A connected broker connection, or None if a shutdown stopped the attempts
        (a cold one; a warm one too unless ``warm_stops`` is False).

        Each failed attempt is logged with the broker's URL (password masked) and the
        pause before the next (:func:`broker.retry_delays`); after ``retries`` retries
        (None: never) raises BrokerUnavailable naming the broker.
        """
        where = broker.describe(self.app.conf)
        for attempt, pause in enumerate(broker.retry_delays(), 1):
            if self.cold or (self.warm and warm_stops):
                return None
            connection = broker.connect(self.app.conf)
            try:
                connection.ensure_connection(max_retries=0)
                return connection
            except Exception as exc:  # noqa: BLE001 - kombu raises transport errors variously
                connection.release()
                reason = str(exc).rstrip(".") or type(exc).__name__
                if retries is not None and attempt > retries:
                    raise BrokerUnavailable(
                        f"Could not connect to the broker at {where} after {attempt} attempts "
                        f"({reason}); check that it runs and that broker_url (or "
                        f"FLOWQ_BROKER_URL) points to it") from None
                of = f"{attempt}/{retries}" if retries is not None else f"{attempt}"
                log.warning("Cannot connect to the broker at %s (%s); trying again in %.1fs "
                            "(retry %s)", where, reason, pause, of)
                self._pause(pause, warm_stops)
        return None  # not reached: retry_delays() never ends

    def _pause(self, seconds: float, warm_stops: bool) -> None:
        """Sleep, but wake up when a shutdown is asked (signal handlers set the flags)."""
        deadline = time.monotonic() + seconds
        while not (self.cold or (self.warm and warm_stops)) and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        conn = self.connection or broker.connect(self.app.conf)
        return tuple(conn.connection_errors) + tuple(conn.channel_errors)

    def _connect(self, connection: Any) -> None:
        self.connection = connection
        try:
            self._consume()
        except self.connection.channel_errors as exc:
            mismatch = broker.declaration_mismatch(exc)
            if mismatch is not None:  # a setting to fix, not a connection to retry
                raise mismatch from None
            raise

    def _consume(self) -> None:
        channel = self.connection.channel()
        for name in self.queues:
            broker.dead_letter_queue_for(self.app.conf, name).bind(channel).declare()
        self.intake.channel = channel
        self.consumer = Consumer(channel, [self._queue(q) for q in self.queues],
                                 on_message=self.intake.on_message, no_ack=False)
        # Channel-wide ("global") QoS: one window for all queues, and on RabbitMQ the
        # only kind whose later changes apply to consumers that already exist. Quorum
        # queues refuse it: theirs is per consumer, and keeps the window it started with.
        self.consumer.qos(prefetch_count=self.prefetch, apply_global=not self._quorum)
        self._prefetch_applied = self.prefetch
        self.consumer.consume()
        self.control = remote.listen(self, self.connection)

    def _queue(self, name: str) -> Any:
        return broker.task_queue_for(self.app.conf, name)

    def add_queue(self, name: str) -> None:
        """Start consuming from ``name`` too (remote control ``add_consumer``)."""
        self.queues.append(name)
        broker.dead_letter_queue_for(self.app.conf, name).bind(self.intake.channel).declare()
        self.consumer.add_queue(self._queue(name))
        self.consumer.consume()

    def cancel_queue(self, name: str) -> None:
        """Stop consuming from ``name`` (remote control ``cancel_consumer``)."""
        self.queues.remove(name)
        self.consumer.cancel_by_queue(name)

    def resize_pool(self, delta: int) -> None:
        """Grow or shrink the pool by ``delta`` processes (at least one stays; an
        autoscaled pool stays within its bounds)."""
        size = max(1, self.pool.concurrency + delta)
        self._resize(self.autoscaler.clamp(size) if self.autoscaler else size)

    def autoscale(self, max: int, min: int) -> None:
        """New autoscale bounds (``control autoscale``); the pool moves into them now."""
        assert self.autoscaler is not None
        self.autoscaler.update(max, min)
        self._resize(self.autoscaler.clamp(self.pool.concurrency))

    def _resize(self, size: int) -> None:
        if size != self.pool.concurrency:
            before = self.pool.concurrency
            self.pool.resize(size)
            log.info("Pool resized from %d to %d process(es)", before, self.pool.concurrency)
        self.concurrency = self.pool.concurrency
        self.prefetch = self._window()

    def _window(self) -> int:
        """The prefetch count: ``multiplier`` messages per process, for the largest pool
        autoscaling allows (so that the load can show that more processes are needed)."""
        size = self.autoscaler.max if self.autoscaler else self.concurrency
        return max(1, size * self.multiplier)

    def _maybe_autoscale(self, now: float) -> None:
        if self.autoscaler is None or now < self._next_autoscale:
            return
        self._next_autoscale = now + AUTOSCALE_INTERVAL
        load = len(self.intake.active) + len(self.intake.buffer)
        self._resize(self.autoscaler.target(load, self.pool.concurrency, now))

    def _apply_prefetch(self) -> None:
        """Widen the prefetch window by the messages a rate limit holds back, so they do
        not starve other tasks of deliveries; at most by ``MAX_HELD``, so a large
        rate-limited backlog stays in the broker rather than in worker memory. (Not on
        quorum queues: a per-consumer window cannot change under a running consumer.)"""
        wanted = self.prefetch + min(len(self.intake.held), MAX_HELD)
        if wanted != self._prefetch_applied and self.consumer is not None and not self._quorum:
            self.consumer.qos(prefetch_count=wanted, apply_global=True)
            self._prefetch_applied = wanted

    def _loop(self) -> None:
        while not self.cold:
            if self.warm and self.consumer is not None:
                self._begin_warm_shutdown()
            if self.warm and not self.intake.active:
                return
            busy = bool(self.intake.active or self.intake.buffer or self.intake.held)
            try:
                self.connection.drain_events(timeout=0.002 if busy else 0.1)
            except socket.timeout:
                pass
            self.intake.collect()
            self.intake.pump(self.warm)
            self._apply_prefetch()
            self._housekeeping()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + DELAY_SWEEP_INTERVAL
            self._move_due()
            if self.connection is not None and hasattr(self.connection, "heartbeat_check"):
                try:
                    self.connection.heartbeat_check()
                except NotImplementedError:
                    pass
        if now >= self._next_revoked:
            self._next_revoked = now + REVOKED_REFRESH_INTERVAL
            self._refresh_revoked()
            self.intake.advance_unadvanced()
        self._maybe_autoscale(now)

    def _move_due(self) -> None:
        """Publish delayed messages whose time has come (claimed under a lease). A backend
        or broker outage only delays this: the claimed items come back after the lease."""
        runtime = self.app.runtime
        try:
            due = runtime.backend.delay_due(time.time(), DELAY_LEASE, 500)
            if due:
                # a revoke makes its delayed tasks due at once: know it before they run
                self._refresh_revoked()
                runtime.publisher.send_now([decode_delayed(item.payload) for item in due])
                runtime.backend.delay_done([item.key for item in due])
        except FlowqError as exc:
            log.warning("Could not move due delayed messages (will retry): %s", exc)

    def _refresh_revoked(self) -> None:
        """Reload the revocations from the backend, and kill the processes running tasks
        revoked with ``terminate`` (this worker may have missed the broadcast)."""
        try:
            revocations = self.app.runtime.backend.revocations()
        except Exception as exc:  # keep the last known set; the backend may be restarting
            log.warning("Could not refresh revoked ids: %s", exc)
            return
        self.revoked_ids = set(revocations.ids)
        self.revoked_stamps = revocations.stamps
        by_signal: dict[int, set[str]] = {}
        for task_id, signum in revocations.terminate.items():
            by_signal.setdefault(signum, set()).add(task_id)
        for signum, task_ids in by_signal.items():
            self.intake.terminate(task_ids, signum)
        for signum, stamps in revocations.terminate_stamps.items():
            self.intake.terminate_matching(stamps.revokes, signum)

    def _revoked_reason(self, request: Request) -> str | None:
        if request.id in self.revoked_ids or request.root_id in self.revoked_ids:
            return "revoked"
        if self.revoked_stamps and request.stamps and self.revoked_stamps.revokes(request):
            return "revoked"
        if request.expires is not None and request.expires < time.time():
            return "expired"
        return None

    def _reconnect_after(self, exc: BaseException) -> Any:
        """A new connection after losing one, tried for as long as it takes: during a
        warm shutdown too, so that the running tasks are settled (None after a cold one)."""
        log.error("Lost the broker connection (%s); reconnecting", exc)
        self.intake.forget_connection()
        self._close_connection()
        return self._open_connection(None, warm_stops=False)

    # -- shutdown ---------------------------------------------------------------------------

    def _install_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # an embedded worker (tests, memory://) is stopped with stop()
        signal.signal(signal.SIGTERM, self._on_stop_signal)
        signal.signal(signal.SIGINT, self._on_stop_signal)
        if hasattr(signal, "SIGQUIT"):
            signal.signal(signal.SIGQUIT, self._on_cold_signal)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        if self.warm:
            self._on_cold_signal(signum, frame)
            return
        self.warm = True
        log.warning("Warm shutdown (%s): finishing %d running task(s); press Ctrl-C again "
                    "(or send SIGQUIT) to stop at once, interrupting them",
                    signal.Signals(signum).name, len(self.intake.active))

    def _on_cold_signal(self, signum: int, frame: Any) -> None:
        self.cold = True
        log.warning("Cold shutdown (%s): interrupting %d running task(s)",
                    signal.Signals(signum).name, len(self.intake.active))

    def stop(self) -> None:
        """Ask for a warm shutdown (what SIGTERM does), e.g. from another thread."""
        self.warm = True

    def _begin_warm_shutdown(self) -> None:
        for consumer in (self.consumer, self.control):
            try:
                consumer.cancel()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                pass
        self.consumer = self.control = None
        returned = self.intake.requeue_buffered()
        if returned:
            log.info("Returned %d unstarted message(s) to the broker", returned)

    def _stop(self) -> None:
        # A warm shutdown only gets here once no task runs (or the loop broke on an
        # error); a cold one kills what still runs.
        if self.cold or self.intake.active:
            self.pool.terminate()
            self._settle_interrupted()
        else:
            self.pool.stop()
        self.intake.collect()
        signalling.worker_stopping(self)
        self.events.stop()
        if self.metrics is not None:
            self.metrics.stop()
        self._close_connection()
        self.app.close()
        log.info("Worker %s stopped", self.hostname)

    def _settle_interrupted(self) -> None:
        """Record, requeue and log the tasks a cold shutdown interrupted, by id."""
        failed, requeued = self.intake.interrupt()
        for job in failed:
            log.error("Task %s[%s] interrupted: recorded as failed (WorkerLostError); its "
                      "errbacks run and its workflow's later steps fail",
                      display_name(job.request), job.request.id)
        for job in requeued:
            log.warning("Task %s[%s] interrupted: returned to its queue (acks_late), it "
                        "runs again", display_name(job.request), job.request.id)
        returned = self.intake.requeue_buffered()
        if returned:
            log.info("Returned %d unstarted message(s) to the broker", returned)

    def _close_connection(self) -> None:
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self.connection = None
            self.consumer = self.control = None


def setup_logging(level: str, log_format: str = "text") -> None:
    """One line per record on stderr: text, or JSON objects (see :mod:`flowq.runtime.logs`);
    unless a ``setup_logging`` receiver configures logging itself."""
    signalling.set_up_logging(level, None, log_format, lambda: logs.install(
        logging.StreamHandler(sys.stderr), level, log_format))
