"""Golden wire messages: what protocol 1 looks like, checked in so it never drifts.

Each ``protocol1-*.json`` file holds the messages one ``send`` of a canvas put on the
wire (headers, body, content type), any workflow blob a ``wf_ref`` points to, and the
graph the canvas compiled to, described by :func:`describe`. A reader of any later flowq
must decode every message to that same graph (and to the same node ids: they are how a
redelivered message finds its chord state). The files are written once, by
``python -m tests.reliability.golden``, which never overwrites an existing file: a
released protocol's fixtures are not regenerated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowq.canvas.dag import Workflow
from flowq.canvas.frozen import thaw

HERE = Path(__file__).resolve().parent


def describe(workflow: Workflow) -> dict[str, Any]:
    """A plain-JSON description of a workflow graph, node ids included."""
    nodes = [{"kind": n.kind, "task": n.task, "args": _plain(n.args), "kwargs": _plain(n.kwargs),
              "options": _plain(n.options), "immutable": n.immutable, "input": n.input,
              "members": list(n.members), "task_id": n.task_id, "deferred": n.deferred,
              "items": _plain(n.items)} for n in workflow.nodes]
    return {"seed": workflow.seed, "output": workflow.output, "nodes": nodes,
            "scopes": [[s.lo, s.hi, list(s.errbacks)] for s in workflow.scopes],
            "ids": [workflow.node_id(i) for i in range(len(workflow.nodes))]}


def _plain(value: Any) -> Any:
    return json.loads(json.dumps(thaw(value), default=str))


def load_cases() -> dict[str, dict[str, Any]]:
    """Every golden file, by name."""
    return {path.stem: json.loads(path.read_text())
            for path in sorted(HERE.glob("protocol1-*.json"))}


def canvases() -> dict[str, Any]:
    """The canvases the golden files were made from (tasks of the reliability suite)."""
    from flowq import chord, fanout, group
    from tests.reliability.fault_tasks import body, on_error, step

    return {
        "lone-task": step.s(1, add=2),
        "chain": step.s(1) | step.si(5) | step.s(add=3),
        "chord-with-errback": chord([step.s(i) for i in range(3)],
                                    body.s()).on_error(on_error.s(kind="golden")),
        "group-in-chain": step.s(1) | group(step.s(), step.s(add=2)) | body.s(),
        "fanout": step.s([1, 2, 3]) | fanout(step.s(add=10)) | body.s(),
        "options-and-ids": step.signature((1,), {"kind": "golden"}, priority=5, time_limit=10,
                                          soft_time_limit=5, task_id="golden-fixed-id")
                           | step.s().set(queue="golden-other"),
        # over workflow_inline_limit (4 KiB): travels as wf_ref, the blob is in the file
        "by-reference": step.s(0, token="x" * 5000) | step.s() | step.s(),
        # stamps: node options, and the stamped_headers / stamps headers of each message
        "stamped": chord([step.s(1), step.s(2)], body.s()).stamp(run="golden-run",
                                                                tags=["a", "b"]),
    }


def capture(canvas: Any) -> dict[str, Any]:
    """Compile and 'send' ``canvas`` to an in-memory backend; return what went on the wire."""
    import base64

    from flowq.runtime.eager import EagerRuntime
    from tests.integration.app import app

    runtime = EagerRuntime(app)  # an in-memory backend; messages wait in a local queue
    workflow = app.compile(canvas)
    carried = runtime.workflows.carry(workflow)
    runtime.advancer.start(carried, workflow.seed, None)
    sent = list(runtime.publisher.pending)
    backend = runtime.backend
    blobs = {}
    ref = carried.headers.get("wf_ref")
    if ref:
        blobs[ref] = backend.get_blob(f"wf:{ref}").decode()  # type: ignore[union-attr]
    messages = [{"headers": m.headers, "body": base64.b64encode(m.body).decode(),
                 "content_type": m.content_type, "content_encoding": m.content_encoding}
                for m in sent]
    return {"protocol": 1, "messages": messages, "blobs": blobs, "graph": describe(workflow)}


def write_missing() -> list[Path]:
    """Write the golden file of every canvas that has none yet."""
    written = []
    for name, canvas in canvases().items():
        path = HERE / f"protocol1-{name}.json"
        if path.exists():
            continue
        path.write_text(json.dumps(capture(canvas), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written
