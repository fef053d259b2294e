"""Tracking: the index of recent workflows and their progress (``flowq workflows``, the
dashboard).

When a workflow (anything but a lone task) is sent from outside a task, the sender
indexes it in the result backend in one atomic call (:meth:`ResultBackend.track_workflow`)
with a small summary (the headers that carry its graph, its first task, its shape, how
many nodes it runs) and a detail read only for the workflow itself (every node's canvas
path, compressed: the wire format does not carry paths). Its nodes' first terminal records
then count in the workflow's progress inside the very backend call that stores them, so
tracking adds no round trip to a task transition (on Redis: three commands inside the
store script). The index keeps the ``workflow_index_size`` newest entries, none older than
``result_expires``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from flowq import states
from flowq.canvas.dag import JOIN, Workflow
from flowq.exceptions import MalformedCanvas
from flowq.runtime.backends.base import Progress, ResultBackend, TrackedWorkflow
from flowq.runtime.workflows import Carried, is_trivial


def runs(workflow: Workflow) -> int:
    """How many nodes of ``workflow`` record a result when nothing fails (errbacks and
    what follows them run only on failure)."""
    return len(workflow.nodes) - len(workflow.errback_nodes())


def counted(workflow: Workflow, root_id: str, node: int | None) -> bool:
    """Whether records of ``workflow`` (sent with ``root_id``) count in its progress: it
    is tracked (a root: its root id is its seed, and not a lone task) and ``node`` (None:
    any) is not an errback's."""
    if root_id != workflow.seed or is_trivial(workflow):
        return False
    return node is None or node not in workflow.errback_nodes()


def track(backend: ResultBackend, carried: Carried, root_id: str, created: float,
          expires: float | None, keep: int) -> None:
    """Index the workflow ``carried`` (sent now, at ``created``) as ``root_id``."""
    workflow = carried.workflow
    if not carried.headers:
        return  # a lone task: nothing to draw, nothing to track
    entries = workflow.entries()
    summary = {"v": 1, **carried.headers, "first": workflow.nodes[entries[0]].task if entries
               else None, "shape": _shape(workflow), "total": runs(workflow)}
    paths = [node.path for node in workflow.nodes]
    backend.track_workflow(root_id, created, _dumps(summary), zlib.compress(_dumps(paths)),
                           expires, keep)


def _shape(workflow: Workflow) -> str:
    """What the workflow is at its top: chain, group, chord, fanout or task."""
    path = workflow.nodes[workflow.output].path
    head = path.split(".", 1)[0].split("[", 1)[0]
    if head:
        return head
    return "group" if workflow.nodes[workflow.output].kind == JOIN else "task"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


@attrs.frozen(slots=True)
class Tracked:
    """A tracked workflow as listed: what its sender stored and how far it got."""

    root_id: str
    created: float
    first: str | None
    shape: str
    total: int
    headers: Mapping[str, Any]
    progress: Progress

    @property
    def done(self) -> int:
        return self.progress.done

    @property
    def failed(self) -> int:
        return self.progress.counts.get(states.FAILURE, 0)

    @property
    def state(self) -> str:
        """FAILURE or REVOKED once a node failed or was revoked, SUCCESS once every node
        that runs succeeded, STARTED once one finished, else PENDING."""
        counts = self.progress.counts
        for state in (states.FAILURE, states.REVOKED):
            if counts.get(state):
                return state
        if self.done >= self.total:
            return states.SUCCESS
        return states.STARTED if self.done else states.PENDING

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @property
    def last_change(self) -> float:
        """When a node last finished (or, before any did, when it was sent)."""
        return self.progress.updated or self.created


def parse(entry: TrackedWorkflow) -> Tracked:
    """An index entry, read. Raises MalformedCanvas if its summary cannot be read."""
    try:
        summary = json.loads(entry.summary)
    except ValueError:
        raise MalformedCanvas(f"the tracked summary of {entry.root_id} is not JSON") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("total"), int):
        raise MalformedCanvas(f"the tracked summary of {entry.root_id} is not a summary")
    headers = {key: summary[key] for key in ("wf", "wf_ref") if key in summary}
    return Tracked(entry.root_id, entry.created, summary.get("first"),
                   str(summary.get("shape") or "?"), summary["total"], headers, entry.progress)


def recent(backend: ResultBackend, limit: int) -> list[Tracked]:
    """The ``limit`` workflows sent most recently, newest first."""
    return [parse(entry) for entry in backend.recent_workflows(limit)]


def find(backend: ResultBackend, root_id: str) -> Tracked | None:
    """The tracked workflow ``root_id``, or None."""
    entry = backend.tracked_workflows([root_id])[0]
    return None if entry is None else parse(entry)


def paths(backend: ResultBackend, root_id: str, count: int) -> Sequence[str]:
    """The canvas path of each of the ``count`` nodes of ``root_id`` (``chain[2].chord.body``);
    ``node #i`` where they are not known."""
    detail = backend.workflow_detail(root_id)
    stored: Any = None
    if detail is not None:
        try:
            stored = json.loads(zlib.decompress(detail))
        except (ValueError, zlib.error):
            stored = None
    if not isinstance(stored, list) or len(stored) != count:
        return [f"node #{position}" for position in range(count)]
    return [str(path) or f"node #{position}" for position, path in enumerate(stored)]
