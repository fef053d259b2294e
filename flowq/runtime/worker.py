"""The worker: a consumer in the main process feeding an execution pool.

Lifecycle: connect, declare queues (and their dead-letter queues), print a short
banner, then loop: take messages, hand them to free pool processes, settle finished
ones, move due delayed messages to their queues, refresh revocations. Signals:

* SIGTERM / SIGINT: warm shutdown. Stop consuming, give every message not yet started
  back to the broker at once, let running tasks finish (and be acked), exit 0.
* a second SIGTERM / SIGINT, or SIGQUIT: cold shutdown. Kill running tasks; their
  unacked messages return to the broker when the connection closes. Exit 1.
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

from flowq.exceptions import FlowqError
from flowq.runtime import broker, events, logs, remote, signalling
from flowq.runtime.consumer import Intake
from flowq.runtime.message import Request
from flowq.runtime.pool import Pool, make_pool
from flowq.runtime.publisher import decode_delayed
from flowq.runtime.revoked_stamps import RevokedStamps

if TYPE_CHECKING:
    from flowq.app import Flowq

log = logging.getLogger("flowq.worker")

#: How often the main loop does its housekeeping (seconds).
DELAY_SWEEP_INTERVAL = 0.2
REVOKED_REFRESH_INTERVAL = 1.0
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
                 max_tasks_per_child: int | None = None, app_path: str | None = None):
        app.finalize()  # every task registered before the pool forks
        conf = app.conf
        self.app = app
        self.app_path = app_path or app.main or "?"
        self.pool_kind = pool or conf.worker_pool
        self.concurrency = 1 if self.pool_kind == "solo" else (
            concurrency or conf.worker_concurrency or os.cpu_count() or 1)
        self.queues = list(queues or [conf.task_default_queue])
        self.hostname = expand_hostname(hostname)
        multiplier = prefetch_multiplier or conf.worker_prefetch_multiplier
        self.prefetch = max(1, self.concurrency * multiplier)
        self.max_tasks_per_child = max_tasks_per_child or conf.worker_max_tasks_per_child
        self.pool: Pool = make_pool(self.pool_kind, app, self.concurrency,
                                    self.max_tasks_per_child)
        self.intake = Intake(app, self.pool, self.hostname, self._revoked_reason)
        self.events = events.WorkerEvents(self)  # does nothing unless events are on
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

    # -- running ----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until shut down; return the process exit code."""
        signalling.worker_starting(self)
        self._install_signals()
        self.pool.start()
        self._refresh_revoked()
        self.events.start()
        announced = False
        try:
            while not self.cold:
                try:
                    self._connect()
                    if not announced:  # once it consumes and answers remote control
                        log.info("%s", self.banner())
                        self._warn_about_a_local_backend()
                        signalling.worker_ready(self.intake)
                        announced = True
                    self._loop()
                    break
                except self._connection_errors() as exc:
                    self._reconnect_after(exc)
        finally:
            self._stop()
        return 1 if self.cold else 0

    def _connection_errors(self) -> tuple[type[BaseException], ...]:
        conn = self.connection or broker.connect(self.app.conf)
        return tuple(conn.connection_errors) + tuple(conn.channel_errors)

    def _connect(self) -> None:
        self.connection = broker.connect(self.app.conf)
        self.connection.ensure_connection(max_retries=3)
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
        """Grow or shrink the pool by ``delta`` processes (at least one stays)."""
        self.pool.resize(max(1, self.pool.concurrency + delta))
        self.concurrency = self.pool.concurrency

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

    def _reconnect_after(self, exc: BaseException) -> None:
        log.error("Lost the broker connection (%s); reconnecting", exc)
        self.intake.forget_connection()
        self._close_connection()
        delay = 0.5
        while not self.cold and not self.warm:
            time.sleep(delay)
            try:
                broker.connect(self.app.conf).ensure_connection(max_retries=1)
                return
            except Exception as again:  # noqa: BLE001 - any failure means "try later"
                log.warning("Broker %s still unreachable: %s", broker.describe(self.app.conf), again)
                delay = min(delay * 2, 5.0)

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
        log.info("Warm shutdown (%s): finishing %d running task(s)",
                 signal.Signals(signum).name, len(self.intake.active))

    def _on_cold_signal(self, signum: int, frame: Any) -> None:
        self.cold = True
        log.warning("Cold shutdown (%s): %d running task(s) interrupted",
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
        else:
            self.pool.stop()
        self.intake.collect()
        signalling.worker_stopping(self)
        self.events.stop()
        self._close_connection()
        self.app.close()
        log.info("Worker %s stopped", self.hostname)

    def _close_connection(self) -> None:
        if self.connection is not None:
            try:
                self.connection.release()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass
            self.connection = None
            self.consumer = self.control = None

    # -- display ----------------------------------------------------------------------------

    def _warn_about_a_local_backend(self) -> None:
        """A shared broker with the embedded (per-machine) result backend works on one
        machine only: workers elsewhere would keep their own results and chord counts."""
        conf = self.app.conf
        if conf.result_backend is None and conf.broker_url is not None and not (
                conf.broker_url.startswith(("sqlite:", "memory://"))):
            log.warning("No result_backend set: results and chord counts go to the local "
                        "file %s/results.db. Workers on other machines cannot see them; set "
                        "result_backend (e.g. redis://...) before scaling out.", conf.data_dir)

    def banner(self) -> str:
        tasks = sorted(name for name in self.app.tasks if not name.startswith("flowq."))
        shown = ", ".join(tasks[:8]) + (f" (+{len(tasks) - 8} more)" if len(tasks) > 8 else "")
        conf = self.app.conf
        backend = self.app.runtime.backend.url
        embedded = conf.broker_url is None or conf.result_backend is None
        return "\n".join([
            f"flowq worker {self.hostname} (pid {os.getpid()})",
            f"  app:         {self.app_path}",
            f"  broker:      {broker.describe(conf)}",
            f"  backend:     {backend}",
            *([f"  data dir:    {conf.data_dir} (embedded default)"] if embedded else []),
            f"  queues:      {', '.join(self.queues)}",
            f"  concurrency: {self.concurrency} ({self.pool_kind}), prefetch {self.prefetch}",
            f"  tasks:       {shown or '(none registered)'}",
        ])


def setup_logging(level: str, log_format: str = "text") -> None:
    """One line per record on stderr: text, or JSON objects (see :mod:`flowq.runtime.logs`);
    unless a ``setup_logging`` receiver configures logging itself."""
    signalling.set_up_logging(level, None, log_format, lambda: logs.install(
        logging.StreamHandler(sys.stderr), level, log_format))
