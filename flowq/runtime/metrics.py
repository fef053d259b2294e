"""Prometheus metrics of a worker: ``flowq worker --metrics-port 9808``.

The worker serves ``http://<host>:<port>/metrics`` from a thread of its main process,
with ``prometheus-client`` (the optional extra ``flowq[metrics]``):

==================================  =========  ==================================================
``flowq_tasks_received_total``      counter    messages taken from the broker, by ``task``
``flowq_tasks_succeeded_total``     counter    tasks that returned, by ``task``
``flowq_tasks_failed_total``        counter    tasks that raised, hit a time limit or lost their
                                               process, by ``task``
``flowq_tasks_retried_total``       counter    tasks that asked to be retried, by ``task``
``flowq_tasks_revoked_total``       counter    revoked or expired before they could finish
``flowq_tasks_rejected_total``      counter    messages dead-lettered (never run), by ``queue``
``flowq_task_runtime_seconds``      histogram  run time of tasks that succeeded, failed or
                                               retried, by ``task``
``flowq_chord_completions_total``   counter    joins completed here: chord headers (the body is
                                               sent), groups, fanouts
``flowq_queue_length``              gauge      messages waiting in each consumed ``queue``
``flowq_tasks_reserved``            gauge      messages held by the worker, not started yet
``flowq_pool_processes``            gauge      processes (threads) in the pool
``flowq_pool_busy_processes``       gauge      of them, those running a task
``flowq_pool_utilisation``          gauge      busy processes / processes (0 to 1)
==================================  =========  ==================================================

Counting happens where outcomes already arrive: a prefork child runs the task and sends
its :class:`~flowq.runtime.execute.Outcome` (status, run time, joins completed) back to
the main process, which settles the message, so the main process counts every task
exactly once without anything more crossing the process boundary. prometheus-client's
multi-process mode (a shared directory of memory-mapped files, one set per child pid,
to be cleaned when billiard replaces a child) is not needed. Gauges are read from the
worker when scraped; queue lengths are asked of the broker at most every
:data:`QUEUE_REFRESH` seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from flowq.exceptions import ConfigurationError, MissingExtra
from flowq.runtime.execute import FAILURE, RETRY, SUCCESS

if TYPE_CHECKING:
    from flowq.runtime.consumer import Job
    from flowq.runtime.execute import Outcome
    from flowq.runtime.worker import Worker

log = logging.getLogger("flowq.worker")

#: Histogram buckets of task run times (seconds).
RUNTIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0)
#: Seconds a scrape reuses the queue lengths it last asked the broker for (scrapes in a
#: tight loop do not turn into broker traffic).
QUEUE_REFRESH = 1.0


def _client() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise MissingExtra("--metrics-port needs prometheus-client: pip install "
                           "'flowq[metrics]'") from None
    return prometheus_client


class WorkerMetrics:
    """A task hook (see :class:`flowq.runtime.hooks.TaskHook`) that counts outcomes, and
    the endpoint serving them with the worker's gauges."""

    def __init__(self, worker: Worker):
        client = _client()
        self.registry = registry = client.CollectorRegistry()

        def counter(name: str, doc: str, label: str = "task") -> Any:
            return client.Counter(name, doc, [label], registry=registry)

        self.received = counter("flowq_tasks_received", "Messages taken from the broker.")
        self.succeeded = counter("flowq_tasks_succeeded", "Tasks that returned.")
        self.failed = counter("flowq_tasks_failed", "Tasks that raised, hit a time limit or "
                                                    "lost their process.")
        self.retried = counter("flowq_tasks_retried", "Tasks that asked to be retried.")
        self.revoked = counter("flowq_tasks_revoked", "Tasks revoked or expired.")
        self.rejected = counter("flowq_tasks_rejected", "Messages dead-lettered, never run.",
                                "queue")
        self.runtime = client.Histogram("flowq_task_runtime_seconds", "Task run time.",
                                        ["task"], buckets=RUNTIME_BUCKETS, registry=registry)
        self.chords = client.Counter("flowq_chord_completions", "Joins completed here: "
                                     "chord headers, groups, fanouts.", registry=registry)
        registry.register(_WorkerGauges(worker))
        self._server: Any = None

    def serve(self, host: str, port: int) -> None:
        """Start serving ``/metrics`` (a daemon thread). Raises ConfigurationError naming
        the address when it cannot be bound."""
        try:
            self._server, _ = _client().start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}; choose "
                                     f"another --metrics-port") from None

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # -- the task hook ------------------------------------------------------------------

    def task_received(self, job: Job) -> None:
        self.received.labels(job.request.task).inc()

    def task_started(self, job: Job) -> None:
        """Nothing to count: the busy processes gauge shows what runs."""

    def task_finished(self, job: Job, outcome: Outcome) -> None:
        task = job.request.task
        counted = {SUCCESS: self.succeeded, FAILURE: self.failed, RETRY: self.retried}
        if outcome.status in counted:
            counted[outcome.status].labels(task).inc()
            self.runtime.labels(task).observe(outcome.runtime)
        if outcome.joins:
            self.chords.inc(outcome.joins)

    def task_failed(self, job: Job, error: BaseException) -> None:
        self.failed.labels(job.request.task).inc()

    def task_revoked(self, job: Job, reason: str, terminated: bool) -> None:
        self.revoked.labels(job.request.task).inc()

    def task_rejected(self, headers: Any, queue_name: str, error: BaseException) -> None:
        self.rejected.labels(queue_name).inc()


class _WorkerGauges:
    """A collector reading the worker's pool and buffers, and its queues' lengths, when
    scraped (from the server's thread: plain reads of sizes)."""

    def __init__(self, worker: Worker):
        self.worker = worker
        self._queues: dict[str, int | None] = {}
        self._queues_read = float("-inf")

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        intake = self.worker.intake
        size = self.worker.pool.concurrency
        busy = len(intake.active)
        yield GaugeMetricFamily("flowq_pool_processes", "Processes (threads) in the pool.",
                                value=size)
        yield GaugeMetricFamily("flowq_pool_busy_processes", "Pool processes running a task.",
                                value=busy)
        yield GaugeMetricFamily("flowq_pool_utilisation", "Busy processes / processes.",
                                value=busy / size if size else 0.0)
        yield GaugeMetricFamily("flowq_tasks_reserved", "Messages held, not started yet.",
                                value=len(intake.buffer) + len(intake.held))
        lengths = GaugeMetricFamily("flowq_queue_length", "Messages waiting in the queue.",
                                    labels=["queue"])
        for name, count in self._queue_lengths().items():
            if count is not None:
                lengths.add_metric([name], count)
        yield lengths

    def _queue_lengths(self) -> dict[str, int | None]:
        now = time.monotonic()
        if now - self._queues_read >= QUEUE_REFRESH:
            try:
                self._queues = self.worker.app.control.queue_sizes(list(self.worker.queues))
            except Exception as exc:  # noqa: BLE001 - a scrape must answer; lengths wait
                log.warning("Could not read queue lengths for metrics: %s", exc)
            self._queues_read = now
        return self._queues
