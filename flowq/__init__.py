"""flowq: workflows of background tasks with Celery's canvas vocabulary.

Compose task signatures into chains, groups and chords, send them with one call, and
run them on prefork workers over Redis, RabbitMQ or an embedded SQLite default.

Names are imported on first use, so ``import flowq.canvas`` stays free of broker code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Flowq": "flowq.app",
    "Task": "flowq.task",
    "AsyncResult": "flowq.result",
    "GroupResult": "flowq.result",
    "ResultSet": "flowq.result",
    "LiveWorkflow": "flowq.workflow",
    "Signature": "flowq.canvas",
    "Chain": "flowq.canvas",
    "Group": "flowq.canvas",
    "Chord": "flowq.canvas",
    "Fanout": "flowq.canvas",
    "chain": "flowq.canvas",
    "group": "flowq.canvas",
    "chord": "flowq.canvas",
    "fanout": "flowq.canvas",
    "signature": "flowq.canvas",
    "states": "flowq.states",
    "shared_task": "flowq.shared",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # "X as X": re-exported for type checkers, even with --strict
    from flowq import states as states
    from flowq.app import Flowq as Flowq
    from flowq.canvas.chain import Chain as Chain
    from flowq.canvas.chain import chain as chain
    from flowq.canvas.chord import Chord as Chord
    from flowq.canvas.chord import chord as chord
    from flowq.canvas.fanout import Fanout as Fanout
    from flowq.canvas.fanout import fanout as fanout
    from flowq.canvas.group import Group as Group
    from flowq.canvas.group import group as group
    from flowq.canvas.signature import Signature as Signature
    from flowq.canvas.signature import signature as signature
    from flowq.result import AsyncResult as AsyncResult
    from flowq.result import GroupResult as GroupResult
    from flowq.result import ResultSet as ResultSet
    from flowq.shared import shared_task as shared_task
    from flowq.task import Task as Task
    from flowq.workflow import LiveWorkflow as LiveWorkflow


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowq' has no attribute {name!r}")
    value = importlib.import_module(module)
    return value if name == "states" else getattr(value, name)
