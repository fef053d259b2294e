"""Task ids derived from a workflow's seed id and a node's position.

Every node's id is known before anything is sent (so a result handle exists for every
step at once), yet ids need not travel in messages one by one: any process holding the
workflow can derive them.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1c1b4e-6a43-5b7e-9d0f-3c2a1f9e7b10")


def new_id() -> str:
    """A fresh random task id."""
    return str(uuid.uuid4())


def derive(seed: str, position: int | str) -> str:
    """The id of node ``position`` in the workflow whose first node's id is ``seed``."""
    if position == 0:
        return seed
    return str(uuid.uuid5(_NAMESPACE, f"{seed}/{position}"))


def fanout_item_id(fanout_id: str, item: int) -> str:
    """The id of item ``item`` of an expanded fanout."""
    return str(uuid.uuid5(_NAMESPACE, f"{fanout_id}#{item}"))
