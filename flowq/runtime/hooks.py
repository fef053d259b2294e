"""The one way to follow tasks from the worker: a small hook protocol.

The worker's intake (:mod:`flowq.runtime.consumer`) tells its hook about each moment of a
task's life, in the main process; events (:class:`flowq.runtime.events.TaskEvents`) and
metrics (:class:`flowq.runtime.metrics.WorkerMetrics`) are such hooks, and
:class:`TaskHooks` tells several of them the same things, in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from flowq.runtime.consumer import Job
    from flowq.runtime.execute import Outcome


class TaskHook(Protocol):
    """What the worker's intake tells about each moment of a task's life."""

    def task_received(self, job: Job) -> None: ...

    def task_started(self, job: Job) -> None: ...

    def task_finished(self, job: Job, outcome: Outcome) -> None: ...

    def task_failed(self, job: Job, error: BaseException) -> None: ...

    def task_revoked(self, job: Job, reason: str, terminated: bool) -> None: ...

    def task_rejected(self, headers: Any, queue_name: str, error: BaseException) -> None: ...


def hooks(events: TaskHook, observers: Sequence[TaskHook]) -> TaskHook:
    """What an intake tells of its jobs: the task events hook, then every observer (such
    as metrics), which stay whether events are switched on or off."""
    return TaskHooks([events, *observers]) if observers else events


class TaskHooks:
    """Several :class:`TaskHook` told the same things, in order."""

    def __init__(self, hooks: Sequence[TaskHook]):
        self.hooks = tuple(hooks)

    def task_received(self, job: Job) -> None:
        for hook in self.hooks:
            hook.task_received(job)

    def task_started(self, job: Job) -> None:
        for hook in self.hooks:
            hook.task_started(job)

    def task_finished(self, job: Job, outcome: Outcome) -> None:
        for hook in self.hooks:
            hook.task_finished(job, outcome)

    def task_failed(self, job: Job, error: BaseException) -> None:
        for hook in self.hooks:
            hook.task_failed(job, error)

    def task_revoked(self, job: Job, reason: str, terminated: bool) -> None:
        for hook in self.hooks:
            hook.task_revoked(job, reason, terminated)

    def task_rejected(self, headers: Any, queue_name: str, error: BaseException) -> None:
        for hook in self.hooks:
            hook.task_rejected(headers, queue_name, error)
