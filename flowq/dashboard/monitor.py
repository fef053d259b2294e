"""The dashboard's look at workers, queues and stuck workflows, refreshed in the background.

Broadcasts wait up to a second for replies, so no API request makes one: a thread asks
the workers every ``interval`` seconds (``stats`` for name, pool, counts and load;
``workflow_tasks`` for the ids they run or hold) and reads the queue lengths; another
looks for stuck workflows every ``stuck_every`` seconds; a third listens to worker
events, so workers started with ``-E`` also show their heartbeats. Requests read the
latest snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowq import states
from flowq.runtime import broker, stuck
from flowq.runtime.events import EventReceiver

if TYPE_CHECKING:
    from flowq.app import Flowq

log = logging.getLogger("flowq.dashboard")

#: Seconds a worker that stopped answering stays listed (as offline).
FORGET_AFTER = 300.0


class Monitor:
    """Background snapshots of the workers, the queues and the stuck workflows."""

    def __init__(self, app: Flowq, *, interval: float = 2.0, stuck_after: float = 600.0,
                 stuck_every: float = 15.0, reply_timeout: float = 2.0):
        self.app = app
        self.interval = interval
        self.stuck_after = stuck_after
        self.stuck_every = stuck_every
        self.reply_timeout = reply_timeout
        self._errors: dict[str, str] = {}  # what failed in each background loop
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._workers: dict[str, dict[str, Any]] = {}
        self._running: dict[str, str] = {}
        self._queues: list[dict[str, Any]] = []
        self._delayed = 0
        self._stuck: dict[str, list[dict[str, Any]]] = {}
        self._threads: list[threading.Thread] = []

    # -- reading ----------------------------------------------------------------------------

    @property
    def error(self) -> str | None:
        """Why the last look at the workers or queues (or for stuck workflows) failed."""
        return "; ".join(self._errors.values()) or None

    def workers(self) -> list[dict[str, Any]]:
        now = time.time()
        with self._lock:
            return [{**worker, "seen_ago": now - worker["last_seen"]}
                    for _, worker in sorted(self._workers.items())]

    def running(self) -> dict[str, str]:
        with self._lock:
            return dict(self._running)

    def queues(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._queues)

    def delayed(self) -> int:
        with self._lock:
            return self._delayed

    def stuck(self) -> dict[str, list[dict[str, Any]]]:
        with self._lock:
            return dict(self._stuck)

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._run, "flowq-dashboard-monitor"),
                             (self._run_stuck, "flowq-dashboard-stuck"),
                             (self._listen, "flowq-dashboard-events")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self) -> None:
        self._every(self.interval, self.refresh)

    def _run_stuck(self) -> None:
        self._every(self.stuck_every, self.refresh_stuck)

    def _every(self, seconds: float, step: Callable[[], None]) -> None:
        """Run ``step`` every ``seconds`` until stopped; an error is shown, then retried."""
        name = step.__name__
        while not self._stopping.is_set():
            try:
                step()
                self._errors.pop(name, None)
            except Exception as exc:  # noqa: BLE001 - shown on the pages, retried next time
                self._errors[name] = f"{type(exc).__name__}: {exc}"
                log.warning("Dashboard could not %s: %s", name, self._errors[name])
            self._stopping.wait(seconds)

    def refresh(self) -> None:
        """Ask the workers and read the queues."""
        self._poll_workers()
        self._poll_queues()

    def refresh_stuck(self) -> None:
        """Look for stuck workflows among the recent ones."""
        found = stuck.find(self.app, self.stuck_after, timeout=self.reply_timeout)
        with self._lock:
            self._stuck = {item.tracked.root_id: [
                {"path": w.path, "task": w.task, "id": w.task_id, "queue": w.queue}
                for w in item.waiting] for item in found}

    def _poll_workers(self) -> None:
        control = self.app.control  # no reply limit: a worker started since must be heard
        stats = control.broadcast("stats", reply=True, timeout=self.reply_timeout)
        held = control.broadcast("workflow_tasks", reply=True, timeout=self.reply_timeout)
        now = time.time()
        running: dict[str, str] = {}
        for reply in held:
            for answer in reply.values():
                if isinstance(answer, dict):
                    for key, state in (("reserved", states.RECEIVED), ("active", states.STARTED)):
                        running.update(dict.fromkeys(map(str, answer.get(key) or ()), state))
        with self._lock:
            for reply in stats:
                for name, answer in reply.items():
                    if isinstance(answer, dict):
                        self._workers[name] = {**self._workers.get(name, {}),
                                               **_from_stats(name, answer), "last_seen": now}
            for name, worker in list(self._workers.items()):
                if now - worker["last_seen"] > FORGET_AFTER:
                    del self._workers[name]
                elif now - worker["last_seen"] > 2 * (self.interval + 2 * self.reply_timeout):
                    worker["status"] = "offline"  # missed two looks (each waits for replies)
            self._running = running

    def _poll_queues(self) -> None:
        conf = self.app.conf
        with self._lock:
            names = {conf.task_default_queue}
            for worker in self._workers.values():
                names.update(worker.get("queues") or ())
        everything = sorted(names) + sorted(n + broker.DEAD_LETTER_SUFFIX for n in names)
        sizes = self.app.control.queue_sizes(everything)
        delayed = self.app.runtime.backend.delay_count()
        with self._lock:
            self._queues = [{"name": name, "messages": sizes.get(name),
                             "dead_letter": name.endswith(broker.DEAD_LETTER_SUFFIX)}
                            for name in everything]
            self._delayed = delayed

    def _listen(self) -> None:
        """Worker heartbeats (workers started with -E), until stopped."""
        while not self._stopping.is_set():
            try:
                with EventReceiver(self.app) as receiver:
                    while not self._stopping.is_set():
                        for event in receiver.events(timeout=1.0):
                            self._on_event(event)
            except Exception as exc:  # noqa: BLE001 - the broker may be down: try again
                log.debug("Dashboard event listener stopped: %s", exc)
                self._stopping.wait(self.interval)

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        name = event.get("hostname")
        if not isinstance(kind, str) or not kind.startswith("worker-") or not name:
            return
        with self._lock:
            worker = self._workers.setdefault(name, {"name": name})
            worker.update({key: event[key] for key in ("active", "processed", "concurrency",
                                                       "queues") if key in event})
            worker["heartbeat"] = event.get("timestamp")
            worker["last_seen"] = time.time()
            worker["status"] = "offline" if kind == "worker-offline" else "online"


def _from_stats(name: str, stats: dict[str, Any]) -> dict[str, Any]:
    """A worker's row from its ``stats`` reply."""
    pool = stats.get("pool") or {}
    counts = stats.get("counts") or {}
    concurrency = pool.get("concurrency") or 0
    active = stats.get("active") or 0
    return {"name": name, "status": "online", "pid": stats.get("pid"),
            "concurrency": concurrency, "pool": pool.get("kind"), "active": active,
            "reserved": stats.get("reserved") or 0,
            "processed": counts.get("succeeded", 0) + counts.get("failed", 0),
            "load": round(active / concurrency, 2) if concurrency else None,
            "loadavg": stats.get("loadavg"), "queues": stats.get("queues") or [],
            "uptime": stats.get("uptime")}
