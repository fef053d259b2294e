"""Tasks flowq registers on every app for its own use.

``flowq.resume`` and ``flowq.resume_failure`` finish a task that replaced itself
(``self.replace(sig)``): they end the replacement workflow and record its outcome as
the original task's, advancing the original workflow from where that task stood.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flowq.exceptions import RemoteError
from flowq.runtime.advance import At
from flowq.runtime.codec import exception_from_dict

if TYPE_CHECKING:
    from flowq.app import Flowq

RESUME = "flowq.resume"
RESUME_FAILURE = "flowq.resume_failure"


def place(at: At, task: str) -> dict[str, Any]:
    """How the resume tasks find the replaced task's place again (JSON only)."""
    return {"workflow": at.carried.headers, "node": at.node, "root_id": at.root_id,
            "item": list(at.item) if at.item else None, "task": task, "task_id": at.task_id}


def _runtime(app: Flowq, task: Any) -> Any:
    """The runtime running ``task`` now (an eager run's or this worker's)."""
    return task.request.runtime or app.runtime


def _at(runtime: Any, where: dict[str, Any]) -> At:
    carried = runtime.workflows.load(where["workflow"], where["task"], where["task_id"])
    item = tuple(where["item"]) if where.get("item") else None
    return At(carried, where["node"], where["root_id"], item)  # type: ignore[arg-type]


def register(app: Flowq) -> None:
    @app.task(name=RESUME, bind=True)
    def resume(self: Any, value: Any, where: dict[str, Any]) -> Any:
        """The replacement finished: its value is the replaced task's result."""
        runtime = _runtime(app, self)
        runtime.advancer.succeeded(_at(runtime, where), value)
        return value

    @app.task(name=RESUME_FAILURE, bind=True)
    def resume_failure(self: Any, failed_id: str, where: dict[str, Any]) -> None:
        """The replacement failed: the replaced task fails with the same error."""
        runtime = _runtime(app, self)
        record = runtime.backend.get(failed_id)
        doc = app.result_codec.load(record.payload) if record else {}
        error = (exception_from_dict(doc["exc"]) if "exc" in doc
                 else RemoteError("unknown", f"replacement task {failed_id} failed"))
        runtime.advancer.failed(_at(runtime, where), error, doc.get("traceback"))
