"""Remote control from Python: ``app.control``.

Revocations are written to the result backend (with an expiry), where every worker
reads them, so they reach workers that are busy, restarting or not yet started.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from flowq.runtime import broker

if TYPE_CHECKING:
    from flowq.app import Flowq


class Control:
    """Operations on running workers and queues."""

    def __init__(self, app: Flowq):
        self.app = app

    def revoke(self, task_id: str | Iterable[str], terminate: bool = False,
               signal: str = "SIGTERM", workflow: bool = False) -> None:
        """Revoke task ids; ids that are workflow root ids stop their whole workflow."""
        ids = [task_id] if isinstance(task_id, str) else list(task_id)
        self.app.backend.revoke(ids, expires=self.app.conf.result_expires)

    def revoke_workflow(self, root_id: str) -> None:
        self.revoke(root_id, workflow=True)

    def purge(self, queues: Sequence[str] | None = None) -> int:
        """Delete every waiting message in ``queues`` (default queue if None); return the count."""
        names = list(queues or [self.app.conf.task_default_queue])
        total = 0
        with broker.connect(self.app.conf) as connection:
            channel = connection.channel()
            for name in names:
                total += broker.task_queue(name, self.app.conf.task_queue_max_priority)(
                    channel).purge() or 0
        return total

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"app.control.{name} is not available yet")
