"""Remote control from Python: ``app.control`` and ``app.control.inspect()``.

Commands are broadcast to workers over a fanout exchange (kombu's Mailbox) and replies
are collected until a timeout; ``destination`` limits a command to named workers.
Revocations are also written to the result backend (with an expiry), so they reach
workers that are busy, restarting or not yet started.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from kombu import Connection
from kombu.pidbox import Mailbox

from flowq.exceptions import BrokerUnavailable
from flowq.runtime import broker, revoked_stamps

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.settings import Settings

Replies = list[dict[str, Any]]


def mailbox(app: Flowq) -> Mailbox:
    """The ``flowq`` mailbox: a fanout exchange every worker listens on."""
    return Mailbox(app.conf.control_exchange, type="fanout", accept=["json"], serializer="json",
                   reply_queue_expires=10.0)


def open_connection(conf: Settings, max_retries: int | None = None) -> Connection:
    """Connect to the broker, retrying ``max_retries`` times (default: the
    ``broker_connection_max_retries`` setting) within a few seconds; raise
    BrokerUnavailable naming the URL (password masked) if it cannot."""
    retries = conf.broker_connection_max_retries if max_retries is None else max_retries
    connection = broker.connect(conf)
    # Remote control needs no publisher confirms (replies are the confirmation), and a
    # confirm that never comes would block a command without a timeout.
    (connection.transport_options or {}).pop("confirm_publish", None)
    try:
        # kombu's own default intervals (2 s, +2 s each, up to 30 s) make 5 retries take
        # 30 s; a command line should give up within seconds.
        connection.ensure_connection(max_retries=retries if conf.broker_connection_retry else 0,
                                     interval_start=broker.RETRY_START,
                                     interval_step=broker.RETRY_STEP,
                                     interval_max=broker.RETRY_MAX)
    except Exception as exc:  # noqa: BLE001 - kombu wraps transport errors variously
        connection.release()
        raise BrokerUnavailable(f"could not connect to the broker at "
                                f"{broker.describe(conf)}: {exc}") from None
    return connection


class Control:
    """Operations on running workers and queues."""

    def __init__(self, app: Flowq):
        self.app = app

    @contextmanager
    def connection(self, max_retries: int | None = None) -> Iterator[Connection]:
        """A connected broker connection; BrokerUnavailable (URL masked) if there is none.

        ``max_retries`` defaults to the ``broker_connection_max_retries`` setting.
        """
        connection = open_connection(self.app.conf, max_retries)
        try:
            try:
                yield connection
            except connection.connection_errors as exc:
                raise BrokerUnavailable(f"lost the connection to the broker at "
                                        f"{broker.describe(self.app.conf)}: {exc}") from None
        finally:
            connection.release()

    def broadcast(self, command: str, arguments: dict[str, Any] | None = None,
                  destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = 1.0, limit: int | None = None) -> Replies:
        """Send ``command`` to every worker (or ``destination``); with ``reply``, return
        ``[{hostname: reply}, ...]`` collected for ``timeout`` seconds."""
        if destination and limit is None and reply:
            limit = len(destination)  # every named node answered: no need to wait longer
        with self.connection() as connection:
            return _broadcast(self.app, connection, command, arguments or {},
                              list(destination) if destination else None, reply, timeout,
                              limit)

    def _call(self, command: str, **kwargs: Any) -> Replies:
        destination = kwargs.pop("destination", None)
        timeout = kwargs.pop("timeout", 1.0)
        reply = kwargs.pop("reply", True)
        return self.broadcast(command, kwargs, destination, reply=reply, timeout=timeout)

    def ping(self, destination: Sequence[str] | None = None, timeout: float = 1.0) -> Replies:
        return self._call("ping", destination=destination, timeout=timeout)

    def revoke(self, task_id: str | Iterable[str], terminate: bool = False,
               signal: str = "SIGTERM", destination: Sequence[str] | None = None,
               reply: bool = False, timeout: float = 1.0) -> Replies:
        """Revoke task ids (or whole workflows, by root id): remembered in the backend
        (see :meth:`_revocation_lifetime`), and broadcast so busy workers act at once;
        with ``terminate``, the processes running them are killed with ``signal``."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        if terminate:
            from flowq.runtime.remote import signal_number

            self.app.backend.revoke_and_terminate(ids, signal_number(signal),
                                                  expires=self._revocation_lifetime())
        else:
            self.app.backend.revoke(ids, expires=self._revocation_lifetime())
        replies = self._call("revoke", task_id=ids, terminate=terminate, signal=signal,
                             destination=destination, reply=reply, timeout=timeout)
        # Delayed ones fall due now, so a worker takes them and records REVOKED at once;
        # after the broadcast, which workers then hear before the messages come.
        self.app.backend.delay_expedite(ids, time.time())
        return replies

    def revoke_by_stamped_headers(self, headers: Mapping[str, Any], destination:
                                  Sequence[str] | None = None, terminate: bool = False,
                                  signal: str = "SIGTERM", reply: bool = False,
                                  timeout: float = 1.0) -> Replies:
        """Revoke every task stamped with one of ``headers``' values (``{name: value or
        [values]}``, see :mod:`flowq.runtime.revoked_stamps`): those waiting or sent
        later never run; with ``terminate``, running ones are killed with ``signal``.
        Kept in the backend like :meth:`revoke`, and broadcast."""
        entries = revoked_stamps.entries(headers)
        if terminate:
            from flowq.runtime.remote import signal_number

            self.app.backend.revoke_and_terminate(entries, signal_number(signal),
                                                  expires=self._revocation_lifetime())
        else:
            self.app.backend.revoke(entries, expires=self._revocation_lifetime())
        return self._call("revoke_by_stamped_headers",
                          headers=revoked_stamps.normalized(headers), terminate=terminate,
                          signal=signal, destination=destination, reply=reply,
                          timeout=timeout)

    def _revocation_lifetime(self) -> float | None:
        """``result_expires``, stretched to outlast every delayed message now waiting,
        so a revoked task whose ETA is further away than that still never runs."""
        expires = self.app.conf.result_expires
        horizon = self.app.backend.delay_horizon()
        if expires is None or horizon is None:
            return expires
        return max(expires, horizon - time.time() + expires)

    def revoke_workflow(self, root_id: str, terminate: bool = False) -> Replies:
        """Stop every node of the workflow ``root_id`` that has not finished."""
        return self.revoke(root_id, terminate=terminate)

    def terminate(self, task_id: str | Iterable[str], signal: str = "SIGTERM",
                  **kwargs: Any) -> Replies:
        return self.revoke(task_id, terminate=True, signal=signal, **kwargs)

    def rate_limit(self, task_name: str, rate_limit: str | float | None,
                   **kwargs: Any) -> Replies:
        return self._call("rate_limit", task_name=task_name, rate_limit=rate_limit, **kwargs)

    def time_limit(self, task_name: str, soft: float | None = None, hard: float | None = None,
                   **kwargs: Any) -> Replies:
        return self._call("time_limit", task_name=task_name, soft=soft, hard=hard, **kwargs)

    def add_consumer(self, queue: str, **kwargs: Any) -> Replies:
        return self._call("add_consumer", queue=queue, **kwargs)

    def cancel_consumer(self, queue: str, **kwargs: Any) -> Replies:
        return self._call("cancel_consumer", queue=queue, **kwargs)

    def pool_grow(self, n: int = 1, **kwargs: Any) -> Replies:
        return self._call("pool_grow", n=n, **kwargs)

    def pool_shrink(self, n: int = 1, **kwargs: Any) -> Replies:
        return self._call("pool_shrink", n=n, **kwargs)

    def shutdown(self, **kwargs: Any) -> Replies:
        return self._call("shutdown", **kwargs)

    def autoscale(self, max: int, min: int, **kwargs: Any) -> Replies:
        """New (MAX, MIN) bounds for workers started with ``--autoscale``."""
        return self._call("autoscale", max_concurrency=max, min_concurrency=min, **kwargs)

    def enable_events(self, **kwargs: Any) -> Replies:
        return self._call("enable_events", **kwargs)

    def disable_events(self, **kwargs: Any) -> Replies:
        return self._call("disable_events", **kwargs)

    def heartbeat(self, **kwargs: Any) -> Replies:
        """Make workers send a ``worker-heartbeat`` event now."""
        return self._call("heartbeat", **kwargs)

    def inspect(self, destination: Sequence[str] | None = None,
                timeout: float = 1.0) -> Inspect:
        return Inspect(self, destination, timeout)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every waiting message in ``queues`` (default queue if None); return the count.

        A queue that does not exist has nothing to delete (0).
        """
        return sum(self.purge_each(queues).values())

    def purge_each(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        """Like :meth:`purge`, with the count per queue."""
        names = list(queues or [self.app.conf.task_default_queue])
        removed: dict[str, int] = {}
        with self.connection() as connection:
            channel = connection.channel()
            for name in names:
                queue = broker.task_queue_for(self.app.conf, name)
                try:
                    removed[name] = queue(channel).purge() or 0
                except connection.channel_errors:  # RabbitMQ: no such queue
                    removed[name] = 0
                    channel = connection.channel()
        return removed

    def queue_sizes(self, queues: Sequence[str]) -> dict[str, int | None]:
        """Messages waiting (not yet delivered to a worker) per queue; None if unknown."""
        sizes: dict[str, int | None] = {}
        with self.connection() as connection:
            channel = connection.channel()
            for name in queues:
                try:
                    sizes[name] = channel.queue_declare(queue=name, passive=True).message_count
                except connection.channel_errors:  # no such queue (or, on Redis, empty)
                    sizes[name] = 0
                    channel = connection.channel()
        return sizes

    def name_taken(self, hostname: str, timeout: float = 0.5) -> bool:
        """Whether a running worker answers to ``hostname`` (checked before a worker starts).

        False when the broker cannot be reached: the worker reports that itself.
        """
        try:
            with self.connection(max_retries=0) as connection:
                replies = _broadcast(self.app, connection, "ping", {}, [hostname], True,
                                     timeout, 1)
        except Exception:  # noqa: BLE001 - only a best-effort warning depends on it
            return False
        return bool(replies)


def _broadcast(app: Flowq, connection: Connection, command: str, arguments: dict[str, Any],
               destination: list[str] | None, reply: bool, timeout: float,
               limit: int | None) -> Replies:
    bound = mailbox(app)(connection)
    try:
        return bound._broadcast(command, arguments, destination, reply=reply,
                                timeout=timeout, limit=limit) or []
    finally:
        if reply:
            # RabbitMQ and Redis expire the reply queue by themselves; the embedded broker
            # would keep it (and its binding) forever.
            try:
                bound.reply_queue(connection.default_channel).delete()
            except Exception:  # noqa: BLE001 - already gone, or the connection is
                pass


class Inspect:
    """Read-only questions to workers; each returns ``{hostname: answer}`` (or None if
    no worker answered)."""

    def __init__(self, control: Control, destination: Sequence[str] | None, timeout: float):
        self.control = control
        self.destination = destination
        self.timeout = timeout

    def _ask(self, command: str, **arguments: Any) -> dict[str, Any] | None:
        replies = self.control.broadcast(command, arguments, destination=self.destination,
                                         reply=True, timeout=self.timeout)
        merged: dict[str, Any] = {}
        for reply in replies:
            merged.update(reply)
        return merged or None

    def ping(self) -> dict[str, Any] | None:
        return self._ask("ping")

    def active(self) -> dict[str, Any] | None:
        return self._ask("active")

    def reserved(self) -> dict[str, Any] | None:
        return self._ask("reserved")

    def scheduled(self) -> dict[str, Any] | None:
        return self._ask("scheduled")

    def registered(self) -> dict[str, Any] | None:
        return self._ask("registered")

    def stats(self) -> dict[str, Any] | None:
        return self._ask("stats")

    def revoked(self) -> dict[str, Any] | None:
        return self._ask("revoked")

    def active_queues(self) -> dict[str, Any] | None:
        return self._ask("active_queues")

    def conf(self) -> dict[str, Any] | None:
        return self._ask("conf")

    def query_task(self, *ids: str) -> dict[str, Any] | None:
        """``{node: {id: [active|reserved, task]}}`` for the tasks each worker holds."""
        return self._ask("query_task", ids=list(ids))

    def clock(self) -> dict[str, Any] | None:
        return self._ask("clock")

    def report(self) -> dict[str, Any] | None:
        return self._ask("report")
