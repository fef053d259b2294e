"""Worker events: what happens to tasks and workers, broadcast for monitors.

A worker started with ``-E`` (or ``worker_send_task_events = True``) publishes one small
JSON message per event to the fanout exchange ``flowq.events``. Every event has ``type``,
``hostname`` (the worker's node name), ``pid``, ``timestamp`` (Unix seconds) and
``clock`` (a per-worker sequence number); the other fields depend on the type:

======================  =============================================================
``task-received``       uuid, name, root_id, parent_id, retries, queue, eta, expires
``task-started``        uuid, name, root_id
``task-succeeded``      uuid, name, root_id, runtime, result (repr, clipped)
``task-failed``         uuid, name, root_id, runtime, exception (``Type: message``)
``task-retried``        uuid, name, root_id, runtime, exception (the reason)
``task-revoked``        uuid, name, root_id, reason (revoked or expired), terminated
``task-rejected``       uuid, name, queue, reason (dead-lettered: never run)
``task-ignored``        uuid, name, root_id, runtime (the task raised Ignore or Reject)
``task-replaced``       uuid, name, root_id, runtime (self.replace: its outcome comes later)
``worker-online``       freq, active, processed, queues, concurrency, sw_ident, sw_ver
``worker-heartbeat``    the same, every :data:`HEARTBEAT_INTERVAL` seconds
``worker-offline``      the same, once at shutdown
======================  =============================================================

Events must not pile up when nobody listens. The exchange is a fanout that stores
nothing itself: on Redis it is PUB/SUB; on RabbitMQ each listener binds its own
exclusive queue (deleted when the listener disconnects) whose messages expire after
:data:`QUEUE_TTL` seconds and which keeps at most :data:`QUEUE_MAX_LENGTH` of them. With
no listener bound, every event is dropped by the broker. On the embedded broker a
listener deletes its queue when it stops, and one that was killed has its queue reaped by
the next listener started on the machine.

A worker publishes from a background thread through a bounded buffer, so a slow or
unreachable broker never slows task processing: events that do not fit are dropped and
counted, and publishing resumes when the broker is back.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from kombu import Consumer, Exchange, Producer, Queue

from flowq.runtime import broker, hooks
from flowq.runtime.execute import FAILURE, IGNORE, REJECT, REPLACED, RETRY, SUCCESS
from flowq.runtime.pidfile import running

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.runtime.consumer import Job
    from flowq.runtime.execute import Outcome
    from flowq.runtime.worker import Worker

log = logging.getLogger("flowq.events")

EXCHANGE_NAME = "flowq.events"
#: Seconds between two ``worker-heartbeat`` events of one worker.
HEARTBEAT_INTERVAL = 2.0
#: Seconds an event waits in a listener's queue before the broker drops it (RabbitMQ).
QUEUE_TTL = 60.0
#: Events a listener's queue keeps at most; older ones are dropped first (RabbitMQ).
QUEUE_MAX_LENGTH = 10_000
#: Seconds an unused listener queue lives on after its listener went away.
QUEUE_EXPIRES = 60.0
#: Events a worker buffers while its publisher thread catches up; more are dropped.
BUFFER_SIZE = 10_000
#: Seconds a worker stops trying to publish after the broker failed it.
RETRY_AFTER = 5.0
#: Prefix of listener queue names: ``flowq.events.<host>.<pid>.<token>``.
LISTENER_PREFIX = EXCHANGE_NAME + "."

Event = dict[str, Any]


def exchange() -> Exchange:
    """The fanout exchange every event goes to (transient messages, nothing durable)."""
    return Exchange(EXCHANGE_NAME, type="fanout", durable=False, auto_delete=False,
                    delivery_mode="transient")


# -- sending ---------------------------------------------------------------------------------


class EventDispatcher:
    """Publishes events of one node from a background thread.

    :meth:`send` only appends to a bounded buffer and never blocks. ``status`` returns
    the fields of worker events; the thread sends a ``worker-heartbeat`` with them every
    ``heartbeat`` seconds while it runs.
    """

    def __init__(self, app: Flowq, hostname: str, *,
                 status: Callable[[], dict[str, Any]] | None = None,
                 heartbeat: float = HEARTBEAT_INTERVAL, buffer: int = BUFFER_SIZE):
        self.app = app
        self.hostname = hostname
        self.status = status or dict
        self.heartbeat = heartbeat
        self.pid = os.getpid()
        self.sent = 0
        self.dropped = 0
        self.clock = 0  # the clock of the last event queued
        self._buffer: queue.Queue[Event] = queue.Queue(buffer)
        self._clock = itertools.count(1)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._connection: Any = None
        self._producer: Producer | None = None
        self._retry_at = 0.0
        self._failing = False

    def send(self, type: str, **fields: Any) -> None:
        """Queue one event; drop it (and count it) when the buffer is full."""
        self.clock = next(self._clock)  # itertools.count: one value per event, any thread
        event = {"type": type, "hostname": self.hostname, "pid": self.pid,
                 "timestamp": time.time(), "clock": self.clock, **fields}
        try:
            self._buffer.put_nowait(event)
        except queue.Full:
            self.dropped += 1

    def send_worker(self, type: str) -> None:
        """Queue a ``worker-*`` event with the worker's current status."""
        self.send(type, freq=self.heartbeat, sw_ident="flowq", sw_ver=_version(),
                  **self.status())

    def start(self) -> None:
        """Start the publisher thread (again, after :meth:`stop`)."""
        self._stopping.clear()
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="flowq-events", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Publish what is buffered (for at most ``timeout`` seconds), then disconnect."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._disconnect()
        if self.dropped:
            log.warning("%d event(s) were dropped (broker unreachable or too slow)",
                        self.dropped)

    # -- the publisher thread ----------------------------------------------------------------

    def _run(self) -> None:
        next_beat = time.monotonic() + self.heartbeat
        while True:
            stopping = self._stopping.is_set()
            wait = 0.05 if stopping else max(0.0, min(0.5, next_beat - time.monotonic()))
            batch = self._take(wait)
            if batch:
                self._publish(batch)
            elif stopping:
                return
            if not stopping and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self.heartbeat
                self.send_worker("worker-heartbeat")

    def _take(self, wait: float) -> list[Event]:
        try:
            batch = [self._buffer.get(timeout=wait)]
        except queue.Empty:
            return []
        while len(batch) < 500:
            try:
                batch.append(self._buffer.get_nowait())
            except queue.Empty:
                break
        return batch

    def _publish(self, batch: list[Event]) -> None:
        if time.monotonic() < self._retry_at:
            self.dropped += len(batch)
            return
        published = 0
        try:
            producer = self._producer or self._connect()
            for event in batch:
                producer.publish(event, exchange=EXCHANGE_NAME, routing_key="",
                                 serializer="json", delivery_mode=1, retry=False)
                published += 1
        except Exception as exc:  # noqa: BLE001 - events are best effort, tasks go on
            self.sent += published
            self.dropped += len(batch) - published
            self._disconnect()
            self._retry_at = time.monotonic() + RETRY_AFTER
            if not self._failing:
                log.warning("Could not send events to %s (%s); dropping events until it "
                            "answers again", broker.describe(self.app.conf), exc)
            self._failing = True
            return
        self.sent += published
        if self._failing:
            log.info("Sending events to %s again", broker.describe(self.app.conf))
            self._failing = False

    def _connect(self) -> Producer:
        connection = broker.connect(self.app.conf)
        # One lost event is cheaper than a broker round trip per event.
        (connection.transport_options or {}).pop("confirm_publish", None)
        connection.ensure_connection(max_retries=1, interval_start=0.1, interval_step=0.5)
        self._connection = connection
        self._producer = Producer(connection.channel(), exchange=exchange(), auto_declare=True)
        return self._producer

    def _disconnect(self) -> None:
        connection, self._connection, self._producer = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass


class TaskEvents:
    """What the worker's intake reports about tasks; does nothing when events are off.

    One method per moment of a task's life, so the intake calls them unconditionally.
    """

    def __init__(self, dispatcher: EventDispatcher | None = None):
        self.dispatcher = dispatcher

    def _send(self, type: str, job: Job, **fields: Any) -> None:
        if self.dispatcher is not None:
            request = job.request
            self.dispatcher.send(type, uuid=request.id, name=request.task,
                                 root_id=request.root_id, **fields)

    def task_received(self, job: Job) -> None:
        request = job.request
        self._send("task-received", job, parent_id=request.parent_id, retries=request.retries,
                   queue=job.queue, eta=request.eta, expires=request.expires)

    def task_started(self, job: Job) -> None:
        self._send("task-started", job)

    def task_finished(self, job: Job, outcome: Outcome) -> None:
        """The pool reported how the task ended (succeeded, failed, retried, ...)."""
        runtime = round(outcome.runtime, 6)
        if outcome.status == SUCCESS:
            self._send("task-succeeded", job, runtime=runtime, result=outcome.summary)
        elif outcome.status in (FAILURE, RETRY):
            kind = "task-failed" if outcome.status == FAILURE else "task-retried"
            self._send(kind, job, runtime=runtime, exception=outcome.summary)
        elif outcome.status in (IGNORE, REJECT):
            self._send("task-ignored", job, runtime=runtime)
        elif outcome.status == REPLACED:
            self._send("task-replaced", job, runtime=runtime)
        # MALFORMED is reported as task-rejected by the dead-lettering that follows.

    def task_failed(self, job: Job, error: BaseException) -> None:
        """The task failed outside its code: time limit, or its process died."""
        self._send("task-failed", job, exception=f"{type(error).__name__}: {error}")

    def task_revoked(self, job: Job, reason: str, terminated: bool) -> None:
        self._send("task-revoked", job, reason=reason, terminated=terminated)

    def task_rejected(self, headers: Any, queue_name: str, error: BaseException) -> None:
        """A message was dead-lettered (never run); ``headers`` may be anything."""
        if self.dispatcher is not None:
            headers = headers if isinstance(headers, dict) else {}
            self.dispatcher.send("task-rejected", uuid=_text(headers.get("id")),
                                 name=_text(headers.get("task")), queue=queue_name,
                                 reason=f"{type(error).__name__}: {error}"[:300])


DISABLED = TaskEvents()


def _text(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) else None


@functools.cache
def _version() -> str:
    try:
        from importlib.metadata import version

        return version("flowq")
    except Exception:  # noqa: BLE001 - running from a source tree
        return "0"


class WorkerEvents:
    """A worker's events: online, heartbeats, offline, and its intake's task events.

    On from the start with ``-E`` (``worker_send_task_events``), or turned on and off
    while the worker runs (``control enable_events`` / ``disable_events``); while off,
    nothing is sent. One dispatcher serves every period on, so its clock keeps counting.
    """

    def __init__(self, worker: Worker):
        self.worker = worker
        self.dispatcher: EventDispatcher | None = None
        self.enabled = False

    @property
    def clock(self) -> int:
        """The clock of the last event this worker sent (0: none yet)."""
        return self.dispatcher.clock if self.dispatcher is not None else 0

    def start(self) -> None:
        if self.worker.app.conf.worker_send_task_events:
            self.enable()

    def enable(self) -> bool:
        """Start sending events; False if they are sent already."""
        if self.enabled:
            return False
        worker = self.worker
        if self.dispatcher is None:
            self.dispatcher = EventDispatcher(worker.app, worker.hostname,
                                              status=lambda: worker_status(worker))
        self.dispatcher.start()
        self.dispatcher.send_worker("worker-online")
        worker.intake.events = hooks.hooks(TaskEvents(self.dispatcher),
                                           worker.intake.observers)
        self.enabled = True
        log.info("Sending events to exchange %s", EXCHANGE_NAME)
        return True

    def disable(self) -> bool:
        """Send ``worker-offline`` and stop sending; False if events are off already."""
        if not self.enabled or self.dispatcher is None:
            return False
        self.worker.intake.events = hooks.hooks(DISABLED, self.worker.intake.observers)
        self.dispatcher.send_worker("worker-offline")
        self.dispatcher.stop()
        self.enabled = False
        log.info("Stopped sending events")
        return True

    def heartbeat(self) -> bool:
        """Send a ``worker-heartbeat`` now; False when events are off."""
        if not self.enabled or self.dispatcher is None:
            return False
        self.dispatcher.send_worker("worker-heartbeat")
        return True

    def stop(self) -> None:
        self.disable()


def worker_status(worker: Worker) -> dict[str, Any]:
    """The fields of ``worker-*`` events (read from the publisher thread: approximate)."""
    intake = worker.intake
    counts = dict(intake.counts)
    return {"active": len(intake.active), "processed": counts.get("succeeded", 0)
            + counts.get("failed", 0), "queues": list(worker.queues),
            "concurrency": worker.concurrency}


# -- receiving -------------------------------------------------------------------------------


class EventReceiver:
    """Listens to ``flowq.events`` through a private, bounded, self-deleting queue.

    ::

        with EventReceiver(app) as receiver:
            for event in receiver.events(timeout=10, limit=5):
                print(format_event(event))

    Entering connects (raising BrokerUnavailable, with the masked URL, if it cannot) and
    subscribes, so events sent after ``__enter__`` returns are received.
    """

    def __init__(self, app: Flowq, *, ttl: float = QUEUE_TTL,
                 max_length: int = QUEUE_MAX_LENGTH, expires: float = QUEUE_EXPIRES):
        self.app = app
        self.queue = Queue(f"{LISTENER_PREFIX}{_host()}.{os.getpid()}.{uuid.uuid4().hex[:8]}",
                           exchange(), routing_key="", durable=False, exclusive=True,
                           auto_delete=True, message_ttl=ttl, max_length=max_length,
                           expires=expires)
        self._pending: deque[Event] = deque()
        self._connection: Any = None
        self._consumer: Consumer | None = None

    def __enter__(self) -> EventReceiver:
        from flowq.runtime.control import open_connection

        connection = self._connection = open_connection(self.app.conf)
        try:
            channel = connection.channel()
            _reap_stale_listeners(channel)
            self._consumer = Consumer(channel, [self.queue], callbacks=[self._on_event],
                                      accept=["json"], no_ack=True)
            self._consumer.consume()
            self._drain(0.05)  # subscribes (Redis PUB/SUB subscribes on the first read)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            if self._consumer is not None:
                self._consumer.cancel()
            self.queue(connection.default_channel).delete()
        except Exception:  # noqa: BLE001 - the broker may be gone; the queue auto-deletes
            pass
        finally:
            connection.release()

    def _on_event(self, body: Any, message: Any) -> None:
        if isinstance(body, dict) and isinstance(body.get("type"), str):
            self._pending.append(body)

    def _drain(self, timeout: float) -> None:
        try:
            self._connection.drain_events(timeout=timeout)
        except TimeoutError:  # socket.timeout: nothing arrived in time
            pass

    def events(self, timeout: float | None = None, limit: int | None = None) -> Iterator[Event]:
        """Yield events as they arrive; stop after ``limit`` events or ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        count = 0
        while limit is None or count < limit:
            if not self._pending:
                left = 0.5 if deadline is None else deadline - time.monotonic()
                if left <= 0:
                    return
                self._drain(min(left, 0.5))
                continue
            yield self._pending.popleft()
            count += 1


def _host() -> str:
    return socket.gethostname().replace(".", "-")


def _reap_stale_listeners(channel: Any) -> None:
    """Delete listener queues left by killed listeners on this machine (virtual brokers).

    RabbitMQ deletes an exclusive queue when its listener disconnects; the embedded and
    Redis brokers keep a queue's binding until someone deletes it, and the embedded one
    would keep copying events into it. A listener queue's name holds its host and pid.
    """
    get_table = getattr(channel, "get_table", None)
    if get_table is None:
        return
    prefix = f"{LISTENER_PREFIX}{_host()}."
    try:
        bound = {queue_name for _, _, queue_name in get_table(EXCHANGE_NAME)}
    except Exception:  # noqa: BLE001 - no binding table yet
        return
    for name in bound:
        if not name.startswith(prefix):
            continue
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not running(int(pid)):
            try:
                channel.queue_delete(name)
                log.debug("Deleted the queue of a listener that is gone: %s", name)
            except Exception as exc:  # noqa: BLE001 - another listener reaped it first
                log.debug("Could not delete %s: %s", name, exc)


# -- display ---------------------------------------------------------------------------------


def format_event(event: Event) -> str:
    """One line for a terminal: ``time node type what``."""
    stamp = event.get("timestamp")
    when = (time.strftime("%H:%M:%S", time.localtime(stamp)) + f".{int(stamp % 1 * 1000):03d}"
            if isinstance(stamp, (int, float)) else "--:--:--.---")
    kind = str(event.get("type", "?"))
    return f"{when} {event.get('hostname', '?')} {kind} {_detail(kind, event)}".rstrip()


def _detail(kind: str, event: Event) -> str:
    if kind.startswith("worker-"):
        return (f"active={event.get('active', '?')} processed={event.get('processed', '?')} "
                f"queues={','.join(event.get('queues') or [])}")
    task = f"{event.get('name') or '?'}[{event.get('uuid') or '?'}]"
    took = f" in {event['runtime']:.4f}s" if isinstance(event.get("runtime"), (int, float)) else ""
    if kind == "task-received":
        return f"{task} queue={event.get('queue')}"
    if kind == "task-succeeded":
        return f"{task}{took} -> {event.get('result', '')}"
    if kind in ("task-failed", "task-retried"):
        return f"{task}{took}: {event.get('exception', '')}"
    if kind == "task-revoked":
        how = "terminated" if event.get("terminated") else "not run"
        return f"{task} {event.get('reason', 'revoked')} ({how})"
    if kind == "task-rejected":
        return f"{task} from {event.get('queue')}: {event.get('reason', '')}"
    return f"{task}{took}"
