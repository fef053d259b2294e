"""The documents the dashboard's JSON API serves (``/api/...``), built from the backend,
the tracking index and the monitor's latest look at the workers.

Every function returns plain JSON types; none of them writes anything.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from flowq import states
from flowq.canvas.dag import Workflow
from flowq.canvas.frozen import thaw
from flowq.canvas.graph import to_graph
from flowq.exceptions import MalformedCanvas
from flowq.runtime import live, tracking
from flowq.runtime.tracking import Tracked

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.dashboard.monitor import Monitor

#: Nodes the workflow page draws at most; a larger workflow shows its counts only.
MAX_DRAWN = 1000
#: Characters of a result, an argument list or a traceback shown on a node's page.
MAX_TEXT = 20_000


def workflow_summary(tracked: Tracked, monitor: Monitor) -> dict[str, Any]:
    """One line of the recent-workflows list."""
    stuck = monitor.stuck().get(tracked.root_id)
    return {"root_id": tracked.root_id, "shape": tracked.shape, "first": tracked.first,
            "state": tracked.state, "done": tracked.done, "total": tracked.total,
            "failed": tracked.failed, "counts": dict(tracked.progress.counts),
            "created": tracked.created, "age": time.time() - tracked.created,
            "last_change": tracked.last_change, "stuck": stuck}


def workflows(app: Flowq, monitor: Monitor, limit: int) -> dict[str, Any]:
    listed = tracking.recent(app.runtime.backend, limit)
    return {"workflows": [workflow_summary(t, monitor) for t in listed],
            "stuck_after": monitor.stuck_after}


def workflow(app: Flowq, monitor: Monitor, root_id: str) -> dict[str, Any] | None:
    """A workflow with its nodes and edges (None if it is not tracked)."""
    tracked = tracking.find(app.runtime.backend, root_id)
    if tracked is None:
        return None
    doc = workflow_summary(tracked, monitor)
    loaded = _load(app, tracked)
    if len(loaded.nodes) > MAX_DRAWN:
        return {**doc, "nodes": [], "edges": [], "too_large": len(loaded.nodes)}
    graph = live.live_graph(app, loaded, monitor.running())
    paths = tracking.paths(app.runtime.backend, root_id, len(loaded.nodes))
    errbacks = loaded.errback_nodes()
    nodes = []
    for position in range(len(loaded.nodes)):
        data = graph.nodes[position]
        nodes.append({"index": position, "id": data["id"], "task": data["task"],
                      "kind": data["kind"], "path": paths[position], "state": data["state"],
                      "result": data.get("result"), "width": data.get("width"),
                      "errback": position in errbacks})
    edges = [[source, target, flow] for source, target, flow in graph.edges(data="flow")]
    return {**doc, "nodes": nodes, "edges": edges, "output": loaded.output}


def node(app: Flowq, root_id: str, position: int) -> dict[str, Any] | None:
    """One node in full: its call, and its result or exception and traceback."""
    tracked = tracking.find(app.runtime.backend, root_id)
    if tracked is None:
        return None
    loaded = _load(app, tracked)
    if not 0 <= position < len(loaded.nodes):
        return None
    graph = to_graph(loaded)
    data = graph.nodes[position]
    spec = loaded.nodes[position]
    record = app.runtime.backend.get(data["id"])
    doc: dict[str, Any] = {
        "index": position, "id": data["id"], "task": spec.task, "kind": spec.kind,
        "path": tracking.paths(app.runtime.backend, root_id, len(loaded.nodes))[position],
        "args": _text(list(thaw(spec.args))), "kwargs": _text(dict(thaw(spec.kwargs))),
        "options": _text(dict(thaw(spec.options))),
        "receives": _receives(loaded, position),
        "state": record.state if record else states.PENDING,
        "result": None, "exception": None, "traceback": None}
    if record is not None:
        doc.update(_outcome(app, record.payload))
    return doc


def _receives(workflow: Workflow, position: int) -> str | None:
    """What the node gets before its own arguments: its parent's result, if it takes it."""
    spec = workflow.nodes[position]
    if spec.input is None or spec.immutable:
        return None
    parent = workflow.nodes[spec.input]
    what = "the list of results of" if parent.kind == "join" else "the result of"
    return f"{what} node {spec.input} ({parent.task or parent.kind}) as first argument"


def _outcome(app: Flowq, payload: bytes) -> dict[str, Any]:
    try:
        document = app.result_codec.load(payload)
    except Exception as error:  # noqa: BLE001 - a payload this process may not decode
        return {"result": f"(cannot be read here: {error})"}
    if "exc" in document:
        exc = document["exc"] if isinstance(document["exc"], dict) else {}
        return {"exception": f"{exc.get('type', '?')}: {exc.get('message', '')}",
                "traceback": _clip(str(document.get("traceback") or ""))}
    return {"result": _text(document.get("result"))}


def _text(value: Any) -> str:
    return _clip(repr(value))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 1] + "…"


def _load(app: Flowq, tracked: Tracked) -> Workflow:
    workflow = live.find(app, tracked.root_id)
    if workflow is None:  # tracked, but its pointer expired first
        raise MalformedCanvas(f"the graph of workflow {tracked.root_id} is no longer stored")
    return workflow


def queues(monitor: Monitor) -> dict[str, Any]:
    return {"queues": monitor.queues(), "delayed": monitor.delayed()}


def workers(monitor: Monitor) -> dict[str, Any]:
    return {"workers": monitor.workers()}
