"""A sent workflow's live state, found by the id of any of its nodes.

When a workflow (anything but a lone task) is sent from outside a task, the sender stores
in the result backend, with ``result_expires``, a small pointer blob ``wfroot:<root_id>``
(the headers its messages carry: the workflow inline, or the content hash of the copy
already stored) and, for every node, an index entry ``wfnode:<task_id>`` holding the root
id: one batched write of n + 1 small blobs, so ``flowq graph`` and ``AsyncResult.root_id``
find the workflow from any node's id with one read. Node ids are uuid5 digests of the
root id and a position, which cannot be turned back into the root id, hence the index.
The items of a fanout are indexed when it expands (one batched write per expansion).

Drawing a workflow costs one read for the pointer and one ``get_many`` for the records of
every node, plus one look at each unfinished join or fanout. A node's state is its
record's (PENDING without one); nodes without a record that a worker is running or
holding right now show STARTED or RECEIVED, read from the workers' ``active`` and
``reserved`` replies. A fanout shows its width once its input is known.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import networkx as nx

from flowq import states
from flowq.canvas import ids
from flowq.canvas.dag import FANOUT, JOIN, Node, Workflow
from flowq.canvas.graph import to_graph
from flowq.exceptions import MalformedCanvas
from flowq.runtime.backends.base import Record, ResultBackend
from flowq.runtime.codec import exception_from_dict
from flowq.runtime.workflows import Carried

if TYPE_CHECKING:
    from flowq.app import Flowq

_RESULT_CHARS = 60


def pointer_key(root_id: str) -> str:
    return f"wfroot:{root_id}"


def node_key(task_id: str) -> str:
    return f"wfnode:{task_id}"


def remember(backend: ResultBackend, carried: Carried, root_id: str,
             expires: float | None) -> None:
    """Store where the workflow ``root_id`` can be found, and the root of each of its
    nodes, in one batched write; a lone task needs neither (it is its own root)."""
    if not carried.headers:
        return
    entry = root_id.encode()
    backend.put_blobs([(pointer_key(root_id), json.dumps(carried.headers).encode()),
                       *((node_key(task_id), entry) for task_id in carried.workflow.ids())],
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
    """The workflow sent with root id ``root_id``, or None if no pointer is stored.

    Raises MalformedCanvas if the pointer is there but the workflow cannot be read.
    """
    runtime = app.runtime
    data = runtime.backend.get_blob(pointer_key(root_id))
    if data is None:
        return None
    try:
        headers = json.loads(data)
    except ValueError:
        raise MalformedCanvas(f"the workflow pointer of {root_id} is not JSON") from None
    if not isinstance(headers, dict):
        raise MalformedCanvas(f"the workflow pointer of {root_id} is not an object")
    return runtime.workflows.load(headers, "?", root_id).workflow


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


def _fanout(app: Flowq, workflow: Workflow, position: int, records: list[Record | None],
            running: Mapping[str, str], data: dict[str, Any]) -> None:
    """Width of an expanded fanout, its progress, and STARTED while items run."""
    node = workflow.nodes[position]
    items = _listed(app, node, None if node.input is None else records[node.input])
    if items is None:
        return
    width = len(items)
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


def running_ids(app: Flowq, root_id: str, timeout: float = 1.0) -> dict[str, str]:
    """Ids of ``root_id``'s tasks that workers run (STARTED) or hold (RECEIVED) now."""
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
    errback_side = workflow.on_failure_only()
    for position in range(len(workflow.nodes)):
        state = graph.nodes[position].get("state")
        if state in states.READY_STATES:
            continue
        if position not in errback_side or state != states.PENDING:
            return True
    return False


@attrs.frozen(slots=True)
class Progress:
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
    def of(cls, found: Sequence[str | None]) -> Progress:
        """The progress of tasks in the states ``found`` (None: no record yet)."""
        succeeded = sum(1 for state in found if state == states.SUCCESS)
        failed = sum(1 for state in found if state in (states.FAILURE, states.REVOKED))
        running = sum(1 for state in found if state is not None
                      and state not in states.READY_STATES)
        return cls(len(found), succeeded, failed, running)


def progress(app: Flowq, workflow: Workflow, backend: ResultBackend | None = None) -> Progress:
    """The :class:`Progress` of a sent workflow: one ``get_many`` over its task nodes, plus
    one over the items of each fanout that expanded and has not succeeded yet."""
    backend = backend or app.runtime.backend
    errback_side = workflow.on_failure_only()
    counted = [p for p, node in enumerate(workflow.nodes)
               if node.kind != JOIN and p not in errback_side]
    node_ids = workflow.ids()
    records = backend.get_many([node_ids[p] for p in counted])
    found: list[str | None] = []
    for position, record in zip(counted, records, strict=True):
        if workflow.nodes[position].kind == FANOUT:
            found += _item_states(app, backend, workflow, position, record)
        else:
            found.append(None if record is None else record.state)
    return Progress.of(found)


def _item_states(app: Flowq, backend: ResultBackend, workflow: Workflow, position: int,
                 record: Record | None) -> list[str | None]:
    """The states of a fanout's items, or of the fanout itself while its list is unknown."""
    if record is not None and record.state == states.SUCCESS:
        done = app.result_codec.load(record.payload).get("result")
        return [states.SUCCESS] * len(done) if isinstance(done, list) else [states.SUCCESS]
    items = fanout_items(app, backend, workflow, position)
    if items is None:
        return [None if record is None else record.state]
    fanout_id = workflow.node_id(position)
    item_records = backend.get_many([ids.fanout_item_id(fanout_id, i) for i in range(len(items))])
    return [None if item is None else item.state for item in item_records]


def fanout_items(app: Flowq, backend: ResultBackend, workflow: Workflow,
                 position: int) -> list[Any] | None:
    """The list a fanout runs over: its own, or its input's stored result (None while
    unknown, or when that result is not a list: the fanout then failed without items)."""
    node = workflow.nodes[position]
    if node.items is not None or node.input is None:
        return _listed(app, node, None)
    return _listed(app, node, backend.get(workflow.node_id(node.input)))


def _listed(app: Flowq, node: Node, parent: Record | None) -> list[Any] | None:
    """A fanout's own list, else its parent's stored result if that is a list."""
    items: Any = node.items
    if items is None and parent is not None and parent.state == states.SUCCESS:
        items = app.result_codec.load(parent.payload).get("result")
    return list(items) if isinstance(items, (list, tuple)) else None
