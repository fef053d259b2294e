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
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from flowq import states
    from flowq.app import Flowq
    from flowq.canvas.chain import Chain, chain
    from flowq.canvas.chord import Chord, chord
    from flowq.canvas.fanout import Fanout, fanout
    from flowq.canvas.group import Group, group
    from flowq.canvas.signature import Signature, signature
    from flowq.result import AsyncResult, GroupResult, ResultSet
    from flowq.task import Task


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'flowq' has no attribute {name!r}")
    value = importlib.import_module(module)
    return value if name == "states" else getattr(value, name)
