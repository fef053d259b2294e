"""Stuck workflows: pending nodes, no progress for a while, and no message that could run them.

A tracked workflow is *stuck* when no node of it finished for ``idle`` seconds and some
node that should run next (an entry, or a node whose input succeeded, or an item of an
expanded fanout) has no message anywhere: none queued (or delivered and not acked), none
delayed, none held or run by a worker. Such a node would stay PENDING forever (its message
was lost or deleted); the node's canvas path says where (``chain[2].chord.body``).

Messages move queue -> worker -> (delay index ->) queue, so the places are looked at in
that order, the queues once more at the end, and the workflow's progress and the waiting
nodes' records are read again last: a message in motion is seen in one of the looks, and
a node that moved on meanwhile changed what is read last. A RabbitMQ queue cannot be read
without taking from it: a node waiting for a non-empty one is taken to be queued.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING

import attrs

from flowq import states
from flowq.canvas import ids
from flowq.canvas.dag import FANOUT, JOIN, Workflow
from flowq.exceptions import MalformedCanvas
from flowq.runtime import live, peek, tracking
from flowq.runtime.backends.base import Record
from flowq.runtime.tracking import Tracked

if TYPE_CHECKING:
    from flowq.app import Flowq


@attrs.frozen(slots=True)
class Waiting:
    """A node (or fanout item) that should have a message: where it is, where it goes."""

    position: int
    task_id: str
    task: str | None
    path: str
    queue: str


@attrs.frozen(slots=True)
class Stuck:
    """A stuck workflow and its nodes that nothing will run."""

    tracked: Tracked
    waiting: tuple[Waiting, ...]


@attrs.frozen(slots=True)
class _Candidate:
    tracked: Tracked
    waiting: tuple[Waiting, ...]
    records: tuple[Record | None, ...]  # of the waiting ids, when first read


def find(app: Flowq, idle: float, limit: int = 1000,
         timeout: float = 1.0) -> list[Stuck]:
    """The stuck workflows among the ``limit`` most recent, newest first.

    ``idle``: seconds without a node finishing; ``timeout``: seconds to wait for workers
    to say what they hold.
    """
    backend = app.runtime.backend
    now = time.time()
    candidates = []
    for tracked in tracking.recent(backend, limit):
        if tracked.finished or now - tracked.last_change < idle:
            continue
        candidate = _candidate(app, tracked)
        if candidate is not None:
            candidates.append(candidate)
    if not candidates:
        return []
    wanted = {w.task_id for c in candidates for w in c.waiting}
    queues = {w.queue for c in candidates for w in c.waiting}
    seen = peek.queued(app, queues, wanted)                      # 1. queued
    held = set(live.running_ids(app, None, timeout))             # 2. at a worker
    delayed = backend.delay_pending(wanted)                      # 3. delayed
    again = peek.queued(app, queues, wanted)                     # 4. queued again
    moving = seen.found | held | delayed | again.found
    blind = seen.blind | again.blind
    stuck = []
    for candidate, entry in zip(candidates, backend.tracked_workflows(
            [c.tracked.root_id for c in candidates]), strict=True):
        if entry is None or entry.progress != candidate.tracked.progress:
            continue  # a node finished meanwhile: not stuck
        lost = _lost(backend.get_many([w.task_id for w in candidate.waiting]), candidate,
                     moving, blind)
        if lost:
            stuck.append(Stuck(candidate.tracked, lost))
    return stuck


def _lost(records: Sequence[Record | None], candidate: _Candidate, moving: Collection[str],
          blind: Collection[str]) -> tuple[Waiting, ...]:
    """The waiting nodes no message was seen for and whose records did not change."""
    return tuple(w for w, before, after in zip(candidate.waiting, candidate.records, records,
                                               strict=True)
                 if w.task_id not in moving and w.queue not in blind and before == after)


def _candidate(app: Flowq, tracked: Tracked) -> _Candidate | None:
    """``tracked`` with the nodes it waits for (None if it waits for none, or its graph
    cannot be read any more)."""
    runtime = app.runtime
    try:
        workflow = runtime.workflows.load(tracked.headers, "?", tracked.root_id).workflow
    except MalformedCanvas:
        return None
    records = runtime.backend.get_many(workflow.ids())
    found = waiting(app, workflow, records)
    if not found:
        return None
    paths = tracking.paths(runtime.backend, tracked.root_id, len(workflow.nodes))
    builder = runtime.builder
    listed = tuple(Waiting(position, task_id, workflow.nodes[position].task, paths[position],
                           builder.queue_of(workflow, position))
                   for position, task_id in found)
    item_records = runtime.backend.get_many([w.task_id for w in listed])
    return _Candidate(tracked, listed, tuple(item_records))


def waiting(app: Flowq, workflow: Workflow,
            records: Sequence[Record | None]) -> list[tuple[int, str]]:
    """``(position, task id)`` of every node (or fanout item) that should have a message
    now: not finished, and nothing it waits for is unfinished. ``records``: one per node."""
    skip = workflow.errback_nodes()
    found: list[tuple[int, str]] = []
    for position, node in enumerate(workflow.nodes):
        record = records[position]
        if position in skip or node.kind == JOIN or (
                record is not None and record.state in states.READY_STATES):
            continue
        if node.input is not None:
            parent = records[node.input]
            if parent is None or parent.state != states.SUCCESS:
                continue
        node_id = workflow.node_id(position)
        if node.kind != FANOUT:
            found.append((position, node_id))
            continue
        width = live.fanout_width(app, workflow, position, records)
        items = [ids.fanout_item_id(node_id, i) for i in range(width or 0)]
        item_records = app.runtime.backend.get_many(items)
        found += [(position, item) for item, item_record in zip(items, item_records, strict=True)
                  if item_record is None or item_record.state not in states.READY_STATES]
    return found
