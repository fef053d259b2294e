"""What a worker says as it starts: its banner, and a warning about a local backend."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from flowq.runtime import broker

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.runtime.worker import Worker

log = logging.getLogger("flowq.worker")


def banner(worker: Worker) -> str:
    """Who the worker is and what it runs with (passwords masked), printed before it
    connects, so that a broker it cannot reach is seen in context."""
    app = worker.app
    tasks = sorted(name for name in app.tasks if not name.startswith("flowq."))
    shown = ", ".join(tasks[:8]) + (f" (+{len(tasks) - 8} more)" if len(tasks) > 8 else "")
    conf = app.conf
    scaler = worker.autoscaler
    size = f"{scaler.min}-{scaler.max} (autoscale)" if scaler else str(worker.concurrency)
    embedded = conf.broker_url is None or conf.result_backend is None
    return "\n".join([
        f"flowq worker {worker.hostname} (pid {os.getpid()})",
        f"  app:         {worker.app_path}",
        f"  broker:      {broker.describe(conf)}",
        f"  backend:     {app.runtime.backend.url}",
        *([f"  data dir:    {conf.data_dir} (embedded default)"] if embedded else []),
        f"  queues:      {', '.join(worker.queues)}",
        f"  concurrency: {size} ({worker.pool_kind}), prefetch {worker.prefetch}",
        *_limits(worker),
        f"  tasks:       {shown or '(none registered)'}",
        *([f"  metrics:     http://{conf.worker_metrics_host}:{conf.worker_metrics_port}"
           f"/metrics"] if worker.metrics is not None else []),
    ])


def _limits(worker: Worker) -> list[str]:
    """The banner's line of worker-wide limits, if any is set."""
    conf = worker.app.conf
    limits = [f"{label} {value}" for label, value in (
        ("time", conf.task_time_limit and f"{conf.task_time_limit:g}s"),
        ("soft time", conf.task_soft_time_limit and f"{conf.task_soft_time_limit:g}s"),
        ("memory per child", worker.max_memory_per_child and
         f"{worker.max_memory_per_child} KiB"),
        ("tasks per child", worker.max_tasks_per_child)) if value]
    return [f"  limits:      {', '.join(limits)}"] if limits else []


def warn_about_a_local_backend(app: Flowq) -> None:
    """A shared broker with the embedded (per-machine) result backend works on one
    machine only: workers elsewhere would keep their own results and chord counts."""
    conf = app.conf
    if conf.result_backend is None and conf.broker_url is not None and not (
            conf.broker_url.startswith(("sqlite:", "memory://"))):
        log.warning("No result_backend set: results and chord counts go to the local "
                    "file %s/results.db. Workers on other machines cannot see them; set "
                    "result_backend (e.g. redis://...) before scaling out.", conf.data_dir)
