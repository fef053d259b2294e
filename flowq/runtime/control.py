"""Remote control from Python: ``app.control`` and ``app.control.inspect()``.

Commands are broadcast to workers over a fanout exchange (kombu's Mailbox) and replies
are collected until a timeout; ``destination`` limits a command to named workers.
Revocations are also written to the result backend (with an expiry), so they reach
workers that are busy, restarting or not yet started.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from kombu.pidbox import Mailbox

from flowq.runtime import broker

if TYPE_CHECKING:
    from flowq.app import Flowq

Replies = list[dict[str, Any]]


def mailbox(app: Flowq) -> Mailbox:
    """The ``flowq`` mailbox: a fanout exchange every worker listens on."""
    return Mailbox("flowq", type="fanout", accept=["json"], serializer="json",
                   reply_queue_expires=10.0)


class Control:
    """Operations on running workers and queues."""

    def __init__(self, app: Flowq):
        self.app = app

    def broadcast(self, command: str, arguments: dict[str, Any] | None = None,
                  destination: Sequence[str] | None = None, reply: bool = False,
                  timeout: float = 1.0, limit: int | None = None) -> Replies:
        """Send ``command`` to every worker (or ``destination``); with ``reply``, return
        ``[{hostname: reply}, ...]`` collected for ``timeout`` seconds."""
        with broker.connect(self.app.conf) as connection:
            bound = mailbox(self.app)(connection)
            result = bound._broadcast(command, arguments or {},
                                      list(destination) if destination else None,
                                      reply=reply, timeout=timeout, limit=limit)
        return result or []

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
        for ``result_expires``, and broadcast so busy workers act at once; with
        ``terminate``, the processes running them are killed with ``signal``."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        self.app.backend.revoke(ids, expires=self.app.conf.result_expires)
        return self._call("revoke", task_id=ids, terminate=terminate, signal=signal,
                          destination=destination, reply=reply, timeout=timeout)

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

    def inspect(self, destination: Sequence[str] | None = None,
                timeout: float = 1.0) -> Inspect:
        return Inspect(self, destination, timeout)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every waiting message in ``queues`` (default queue if None); return the count."""
        names = list(queues or [self.app.conf.task_default_queue])
        total = 0
        with broker.connect(self.app.conf) as connection:
            channel = connection.channel()
            for name in names:
                queue = broker.task_queue(name, self.app.conf.task_queue_max_priority)
                total += queue(channel).purge() or 0
        return total


class Inspect:
    """Read-only questions to workers; each returns ``{hostname: answer}`` (or None if
    no worker answered)."""

    def __init__(self, control: Control, destination: Sequence[str] | None, timeout: float):
        self.control = control
        self.destination = destination
        self.timeout = timeout

    def _ask(self, command: str) -> dict[str, Any] | None:
        replies = self.control.broadcast(command, destination=self.destination, reply=True,
                                         timeout=self.timeout)
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
