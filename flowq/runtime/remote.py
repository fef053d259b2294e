"""Remote-control commands a worker answers (the worker side of ``app.control``).

Commands arrive on the worker's own queue of the ``flowq.pidbox`` fanout exchange
(kombu's Mailbox); each handler gets the worker and the command's arguments and
returns a JSON-able reply. Adding a command means adding a function here.
"""

from __future__ import annotations

import logging
import os
import signal as signals
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kombu.exceptions import InconsistencyError

from flowq.exceptions import ConfigurationError
from flowq.runtime import broker
from flowq.runtime import report as reports
from flowq.runtime.control import mailbox
from flowq.runtime.message import iso
from flowq.runtime.publisher import decode_delayed
from flowq.runtime.ratelimit import parse_rate
from flowq.runtime.revoked_stamps import RevokedStamps

if TYPE_CHECKING:
    from flowq.runtime.worker import Worker

log = logging.getLogger("flowq.worker")

Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}
#: Delayed tasks ``inspect scheduled`` lists (the ones due soonest).
SCHEDULED_SHOWN = 50


def listen(worker: Worker, connection: Any) -> Any:
    """Start answering remote control on ``connection``; return the consumer (or None).

    On RabbitMQ a node's mailbox queue is exclusive: a second worker with the same node
    name cannot listen. It then runs tasks without remote control (and says so) instead
    of failing: the name was already warned about at start-up.
    """
    node = mailbox(worker.app)(connection).Node(worker.hostname, state=worker,
                                                handlers=HANDLERS, channel=connection.channel())
    try:
        return node.listen(callback=node.handle_message)
    except InconsistencyError:
        log.error("Remote control is off for this worker: another worker named %s holds its "
                  "mailbox; give each worker a unique name with -n", worker.hostname)
        return None


def command(fn: Handler) -> Handler:
    """Register ``fn`` as the handler of the command of the same name."""
    HANDLERS[fn.__name__] = fn
    return fn


def _ok(message: str) -> dict[str, str]:
    return {"ok": message}


def _describe(job: Any) -> dict[str, Any]:
    request = job.request
    return {"id": request.id, "name": request.task, "root_id": request.root_id,
            "retries": request.retries, "queue": job.queue,
            "time_start": None if job.started is None else time.time() - (
                time.monotonic() - job.started),
            "acknowledged": job.message.acknowledged}


# -- control ---------------------------------------------------------------------------------


@command
def ping(worker: Worker) -> dict[str, str]:
    """Celery's reply: ``{"ok": "pong"}`` (``{hostname: {"ok": "pong"}}`` per worker)."""
    return _ok("pong")


@command
def revoke(worker: Worker, task_id: str | list[str], terminate: bool = False,
           signal: str = "SIGTERM") -> dict[str, Any]:
    """Forget queued ids at once; with ``terminate``, kill the processes running them."""
    ids = {task_id} if isinstance(task_id, str) else set(task_id)
    worker.revoked_ids |= ids
    killed: list[str] = []
    if terminate:
        killed = worker.intake.terminate(ids, signal_number(signal))
    return _ok(f"revoked {len(ids)} id(s)" + (f", terminated {len(killed)}" if killed else ""))


@command
def revoke_by_stamped_headers(worker: Worker, headers: dict[str, Any], terminate: bool = False,
                              signal: str = "SIGTERM") -> dict[str, Any]:
    """Forget queued tasks with these stamps at once; with ``terminate``, kill the
    processes running them."""
    revoked = RevokedStamps.of(headers)
    worker.revoked_stamps = worker.revoked_stamps.union(revoked)
    killed: list[str] = []
    if terminate:
        killed = worker.intake.terminate_matching(revoked.revokes, signal_number(signal))
    return _ok(f"revoked stamps {sorted(headers)}"
               + (f", terminated {len(killed)}" if killed else ""))


def signal_number(name: str | int) -> int:
    if isinstance(name, int):
        return name
    try:
        return int(signals.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        raise ConfigurationError(f"unknown signal {name!r}") from None


@command
def terminate(worker: Worker, task_id: str | list[str], signal: str = "SIGTERM") -> Any:
    return revoke(worker, task_id, terminate=True, signal=signal)


@command
def rate_limit(worker: Worker, task_name: str, rate_limit: str | float | None) -> Any:
    """Change a task's rate limit in this worker (None or 0: no limit)."""
    if task_name not in worker.app.tasks:
        return {"error": f"unknown task {task_name!r}"}
    parse_rate(rate_limit)  # reject nonsense before changing anything
    worker.intake.limits.set(task_name, rate_limit)
    return _ok(f"rate limit of {task_name} set to {rate_limit or 'none'}")


@command
def time_limit(worker: Worker, task_name: str, soft: float | None = None,
               hard: float | None = None) -> Any:
    """Change a task's soft and hard time limits in this worker."""
    task = worker.app.tasks.get(task_name)
    if task is None:
        return {"error": f"unknown task {task_name!r}"}
    if soft is not None and hard is not None and soft > hard:
        return {"error": f"soft limit {soft} is greater than hard limit {hard}"}
    task.soft_time_limit, task.time_limit = soft, hard
    return _ok(f"time limits of {task_name} set to soft={soft} hard={hard}")


@command
def add_consumer(worker: Worker, queue: str) -> Any:
    if queue in worker.queues:
        return _ok(f"already consuming from {queue}")
    worker.add_queue(queue)
    return _ok(f"now consuming from {queue}")


@command
def cancel_consumer(worker: Worker, queue: str) -> Any:
    if queue not in worker.queues:
        return {"error": f"not consuming from {queue}"}
    worker.cancel_queue(queue)
    return _ok(f"no longer consuming from {queue}")


@command
def pool_grow(worker: Worker, n: int = 1) -> Any:
    worker.resize_pool(+n)
    return _ok(f"pool size is now {worker.pool.concurrency}")


@command
def pool_shrink(worker: Worker, n: int = 1) -> Any:
    worker.resize_pool(-n)
    return _ok(f"pool size is now {worker.pool.concurrency}")


@command
def autoscale(worker: Worker, max_concurrency: int, min_concurrency: int) -> Any:
    """New bounds for an autoscaled pool; the pool moves into them at once."""
    if worker.autoscaler is None:
        return {"error": "autoscale is off for this worker: start it with --autoscale MAX,MIN "
                         "(or use pool_grow / pool_shrink)"}
    try:
        worker.autoscale(max_concurrency, min_concurrency)
    except ConfigurationError as exc:
        return {"error": str(exc)}
    return _ok(f"autoscale max={max_concurrency} min={min_concurrency}, pool size is now "
               f"{worker.pool.concurrency}")


@command
def enable_events(worker: Worker) -> Any:
    if not worker.events.enable():
        return _ok("events were already on")
    return _ok("events on")


@command
def disable_events(worker: Worker) -> Any:
    if not worker.events.disable():
        return _ok("events were already off")
    return _ok("events off")


@command
def heartbeat(worker: Worker) -> Any:
    """Send a ``worker-heartbeat`` event now (to see at once that the worker is there)."""
    if not worker.events.heartbeat():
        return {"error": "events are off for this worker: turn them on with control "
                         "enable_events, or start it with -E"}
    return _ok("heartbeat sent")


@command
def shutdown(worker: Worker) -> Any:
    log.info("Warm shutdown requested by remote control")
    worker.warm = True
    return _ok("shutting down")


# -- inspection ------------------------------------------------------------------------------


@command
def active(worker: Worker) -> list[dict[str, Any]]:
    """Tasks running now."""
    return [_describe(job) for job in worker.intake.active.values()]


@command
def reserved(worker: Worker) -> list[dict[str, Any]]:
    """Tasks taken from the broker but not started (buffered or held by a rate limit)."""
    return [_describe(job) for job in (*worker.intake.held, *worker.intake.buffer)]


@command
def scheduled(worker: Worker, limit: int = SCHEDULED_SHOWN) -> dict[str, Any]:
    """Delayed tasks: they wait in the result backend's delay index, not in workers, so
    every worker gives the same answer: how many wait, and the ``limit`` due soonest."""
    backend = worker.app.runtime.backend
    soonest = []
    for due, payload in backend.delay_peek(limit):
        message = decode_delayed(payload)
        soonest.append({"id": message.id, "name": message.headers.get("task"),
                        "eta": iso(due), "queue": message.queue})
    return {"delayed_in_backend": backend.delay_count(), "next": soonest}


@command
def workflow_tasks(worker: Worker, root_id: str | None = None) -> dict[str, list[str]]:
    """Ids of the workflow ``root_id``'s tasks (None: of every task) this worker runs or
    holds (for live graphs and stuck-workflow checks)."""
    intake = worker.intake

    def of(jobs: Any) -> list[str]:
        return [job.request.id for job in jobs if root_id in (None, job.request.root_id)]

    return {"active": of(intake.active.values()), "reserved": of((*intake.held, *intake.buffer))}


@command
def query_task(worker: Worker, ids: list[str]) -> dict[str, Any]:
    """What this worker holds of tasks ``ids``: ``{id: [active|reserved, task]}``."""
    wanted = set(ids)
    intake = worker.intake
    found = {job.request.id: ["active", _describe(job)] for job in intake.active.values()
             if job.request.id in wanted}
    for job in (*intake.held, *intake.buffer):
        if job.request.id in wanted:
            found.setdefault(job.request.id, ["reserved", _describe(job)])
    return found


@command
def clock(worker: Worker) -> dict[str, Any]:
    """The worker's event clock (the ``clock`` of the last event it sent) and its time,
    to order its events and spot a wrong system clock."""
    return {"clock": worker.events.clock, "time": time.time()}


@command
def report(worker: Worker) -> dict[str, str]:
    """The worker's versions and settings (masked), as ``flowq report`` prints them."""
    return _ok(reports.report(worker.app, worker.app_path))


@command
def registered(worker: Worker) -> list[str]:
    return sorted(worker.app.tasks)


@command
def revoked(worker: Worker) -> list[str]:
    return sorted(worker.revoked_ids)


@command
def active_queues(worker: Worker) -> list[dict[str, Any]]:
    return [{"name": name, "dead_letter": name + broker.DEAD_LETTER_SUFFIX}
            for name in worker.queues]


@command
def stats(worker: Worker) -> dict[str, Any]:
    intake = worker.intake
    return {"hostname": worker.hostname, "pid": os.getpid(),
            "uptime": round(time.monotonic() - worker.started_at, 3),
            "pool": {"kind": worker.pool_kind, "concurrency": worker.pool.concurrency,
                     "processes": worker.pool.pids()},
            "prefetch_count": worker.prefetch, "broker": broker.describe(worker.app.conf),
            "queues": list(worker.queues), "active": len(intake.active),
            "reserved": len(intake.held) + len(intake.buffer),
            "events": worker.events.enabled,
            "autoscaler": worker.autoscaler.info() if worker.autoscaler else None,
            "counts": dict(intake.counts), "rate_limits": intake.limits.limits(),
            "loadavg": [round(load, 2) for load in os.getloadavg()]}


@command
def conf(worker: Worker) -> dict[str, Any]:
    """The worker's effective settings (passwords masked)."""
    return {k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else repr(v)
            for k, v in worker.app.conf.as_dict().items()}
