"""A sent workflow's live state, found by the id of any of its nodes.

When a workflow (anything but a lone task) is sent from outside a task, the sender tracks
it (:mod:`flowq.runtime.tracking`): its summary holds the headers its messages carry (the
workflow inline, or the content hash of the copy already stored). The sender also stores,
for every node, an index entry ``wfnode:<task_id>`` holding the root id (one batched write
of n small blobs), so ``flowq graph``, ``app.workflow()`` and ``AsyncResult.root_id`` find
the workflow from any node's id with one read: node ids are uuid5 digests of the root id
and a position, which cannot be turned back into the root id. The items of a fanout are
indexed when it expands (one batched write per expansion).

Drawing a workflow costs one read for the summary and one ``get_many`` for the records
of every node, plus one look at each unfinished join or fanout. A node's state is its
record's (PENDING without one); nodes without a record that a worker is running or
holding right now show STARTED or RECEIVED, read from the workers' ``active`` and
``reserved`` replies. A fanout shows its width once its input is known.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import networkx as nx

from flowq import states
from flowq.canvas import ids
from flowq.canvas.dag import FANOUT, JOIN, Workflow
from flowq.canvas.graph import to_graph
from flowq.runtime import tracking
from flowq.runtime.backends.base import Record, ResultBackend
from flowq.runtime.codec import exception_from_dict
from flowq.runtime.workflows import Carried

if TYPE_CHECKING:
    from flowq.app import Flowq

_RESULT_CHARS = 60


def node_key(task_id: str) -> str:
    return f"wfnode:{task_id}"


def index_nodes(backend: ResultBackend, workflow: Workflow, root_id: str,
                expires: float | None) -> None:
    """Index every node of the workflow ``root_id``, sent now (one batched write)."""
    entry = root_id.encode()
    backend.put_blobs([(node_key(task_id), entry) for task_id in workflow.ids()],
                      expires=expires)


def index_items(backend: ResultBackend, item_ids: Sequence[str], root_id: str,
                expires: float | None) -> None:
    """Index the items of a fanout that just expanded under the workflow ``root_id``."""
    entry = root_id.encode()
    backend.put_blobs([(node_key(task_id), entry) for task_id in item_ids], expires=expires)


def root_of(backend: ResultBackend, task_id: str) -> str | None:
    """The root id of the sent workflow ``task_id`` belongs to (None if not indexed: a
    lone task, a workflow sent from inside a task, or expired after ``result_expires``)."""
    data = backend.get_blob(node_key(task_id))
    return None if data is None else data.decode()


def find(app: Flowq, root_id: str) -> Workflow | None:
    """The workflow sent with root id ``root_id``, or None if it is not tracked.

    Raises MalformedCanvas if it is tracked but its graph cannot be read.
    """
    carried = find_carried(app, root_id)
    return None if carried is None else carried.workflow


def find_carried(app: Flowq, root_id: str) -> Carried | None:
    """:func:`find`, with the headers that carry the workflow in its messages."""
    runtime = app.runtime
    tracked = tracking.find(runtime.backend, root_id)
    if tracked is None:
        return None
    return runtime.workflows.load(tracked.headers, "?", root_id)


def live_graph(app: Flowq, workflow: Workflow,
               running: Mapping[str, str] | None = None) -> nx.DiGraph:
    """``workflow``'s graph with ``state`` (and ``result``, ``width``) on every node.

    ``running`` maps ids a worker holds to STARTED or RECEIVED (see :func:`running_ids`).
    """
    running = running or {}
    graph = to_graph(workflow)
    backend = app.runtime.backend
    node_ids = workflow.ids()
    records = backend.get_many(node_ids)
    for position, (task_id, record) in enumerate(zip(node_ids, records, strict=True)):
        data = graph.nodes[position]
        data["state"] = record.state if record else running.get(task_id, states.PENDING)
        if record is not None:
            data["result"] = _outcome(app, record)
        node = workflow.nodes[position]
        if node.kind == FANOUT:
            _fanout(app, workflow, position, records, running, data)
        elif node.kind == JOIN and record is None and node.members:
            done = len(backend.chord_values(task_id))
            if done:
                data["result"] = f"{done}/{len(node.members)} done"
    return graph


def fanout_width(app: Flowq, workflow: Workflow, position: int,
                 records: Sequence[Record | None]) -> int | None:
    """How many items the fanout at ``position`` runs, once its list is known (given
    with it, or its parent's result among ``records``, one per node); else None."""
    node = workflow.nodes[position]
    items: Any = node.items
    if items is None and node.input is not None:
        parent = records[node.input]
        if parent is not None and parent.state == states.SUCCESS:
            items = app.result_codec.load(parent.payload).get("result")
    return len(items) if isinstance(items, (list, tuple)) else None


def _fanout(app: Flowq, workflow: Workflow, position: int, records: list[Record | None],
            running: Mapping[str, str], data: dict[str, Any]) -> None:
    """Width of an expanded fanout, its progress, and STARTED while items run."""
    width = fanout_width(app, workflow, position, records)
    if width is None:
        return
    data["width"] = width
    if records[position] is not None:
        return
    fanout_id = workflow.node_id(position)
    done = len(app.runtime.backend.chord_values(fanout_id))
    data["result"] = f"{done}/{width} done"
    if done or any(ids.fanout_item_id(fanout_id, i) in running for i in range(width)):
        data["state"] = states.STARTED


def _outcome(app: Flowq, record: Record) -> str | None:
    """A short text of a stored result or exception (None if it cannot be read here)."""
    try:
        document = app.result_codec.load(record.payload)
    except Exception:  # noqa: BLE001 - a payload this process may not decode
        return None
    if "exc" in document:
        error = exception_from_dict(document["exc"])
        text = f"{type(error).__name__}: {error}"
    elif record.state in states.READY_STATES or document.get("result") is not None:
        text = repr(document.get("result"))  # a result, or the meta of update_state
    else:
        return None
    return text if len(text) <= _RESULT_CHARS else text[: _RESULT_CHARS - 1] + "…"


def running_ids(app: Flowq, root_id: str | None, timeout: float = 1.0) -> dict[str, str]:
    """Ids of ``root_id``'s tasks (None: of any) that workers run (STARTED) or hold
    (RECEIVED) now."""
    found: dict[str, str] = {}
    for reply in app.control.broadcast("workflow_tasks", {"root_id": root_id}, reply=True,
                                       timeout=timeout):
        for answer in reply.values():
            if not isinstance(answer, dict):
                continue
            for key, state in (("reserved", states.RECEIVED), ("active", states.STARTED)):
                for task_id in answer.get(key) or ():
                    found[str(task_id)] = state
    return found


def unfinished(workflow: Workflow, graph: nx.DiGraph) -> bool:
    """Whether some node of the drawn workflow has not reached a final state: a node of
    the main part, or an errback-side node that started (the others never run unless a
    failure sends them)."""
    errback_side = workflow.errback_nodes()
    for position in range(len(workflow.nodes)):
        state = graph.nodes[position].get("state")
        if state in states.READY_STATES:
            continue
        if position not in errback_side or state != states.PENDING:
            return True
    return False


@attrs.frozen(slots=True)
class TaskProgress:
    """How far a workflow got, counted in tasks: its task nodes and, once a fanout's list
    is known, each of its items (joins are bookkeeping, errbacks run only on failure).

    ``failed`` counts FAILURE and REVOKED, including the tasks a failure upstream marked
    failed without running them; ``running`` counts tasks with an unfinished state on
    record (STARTED, RETRY, a custom state from ``update_state``).
    """

    total: int
    succeeded: int = 0
    failed: int = 0
    running: int = 0

    @property
    def done(self) -> int:
        return self.succeeded + self.failed

    @property
    def finished(self) -> bool:
        return self.done >= self.total

    @classmethod
    def of(cls, found: Sequence[str | None]) -> TaskProgress:
        """The progress of tasks in the states ``found`` (None: no record yet)."""
        succeeded = sum(1 for state in found if state == states.SUCCESS)
        failed = sum(1 for state in found if state in (states.FAILURE, states.REVOKED))
        running = sum(1 for state in found if state is not None
                      and state not in states.READY_STATES)
        return cls(len(found), succeeded, failed, running)


def progress(app: Flowq, workflow: Workflow) -> TaskProgress:
    """The :class:`TaskProgress` of a sent workflow: one ``get_many`` over its nodes, plus
    one over the items of each fanout that expanded and has not succeeded yet."""
    backend = app.runtime.backend
    errback_side = workflow.errback_nodes()
    records = backend.get_many(workflow.ids())
    found: list[str | None] = []
    for position, (node, record) in enumerate(zip(workflow.nodes, records, strict=True)):
        if node.kind == JOIN or position in errback_side:
            continue
        if node.kind == FANOUT:
            found += _item_states(app, backend, workflow, position, records)
        else:
            found.append(None if record is None else record.state)
    return TaskProgress.of(found)


def _item_states(app: Flowq, backend: ResultBackend, workflow: Workflow, position: int,
                 records: Sequence[Record | None]) -> list[str | None]:
    """The states of a fanout's items, or of the fanout itself while its list is unknown."""
    record = records[position]
    if record is not None and record.state == states.SUCCESS:
        done = app.result_codec.load(record.payload).get("result")
        return [states.SUCCESS] * len(done) if isinstance(done, list) else [states.SUCCESS]
    width = fanout_width(app, workflow, position, records)
    if width is None:
        return [None if record is None else record.state]
    fanout_id = workflow.node_id(position)
    items = backend.get_many([ids.fanout_item_id(fanout_id, i) for i in range(width)])
    return [None if item is None else item.state for item in items]
