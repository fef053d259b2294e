"""A sent workflow as a whole: ``app.workflow(id)`` or ``handle.workflow()``.

::

    result = chord([add.s(i, i) for i in range(10)], tsum.s()).delay()
    flow = result.workflow()            # the same as app.workflow(result.root_id)
    flow.progress()                     # TaskProgress(total=11, succeeded=4, failed=0, running=2)
    print(flow.render("text"))          # every node with its live state
    flow.state                          # PENDING, STARTED, SUCCESS or FAILURE

Any node's id finds its workflow (see :mod:`flowq.runtime.live` for what is stored to
make that one read). Only workflows sent from outside a task are stored this way; a lone
task has no workflow to show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import networkx as nx

from flowq import states
from flowq.exceptions import WorkflowNotFound
from flowq.runtime import live
from flowq.runtime.live import TaskProgress

if TYPE_CHECKING:
    from flowq.app import Flowq
    from flowq.canvas.dag import Workflow


class LiveWorkflow:
    """A sent workflow, read from the result backend each time it is asked about."""

    def __init__(self, app: Flowq, root_id: str, dag: Workflow):
        self.app = app
        self.root_id = root_id
        #: the compiled workflow (:class:`flowq.canvas.dag.Workflow`): nodes, ids, shape
        self.dag = dag

    @classmethod
    def find(cls, app: Flowq, task_id: str) -> LiveWorkflow:
        """The workflow the task ``task_id`` (any of its nodes, or its root) belongs to.

        Raises :class:`~flowq.exceptions.WorkflowNotFound` saying why none is stored, and
        MalformedCanvas if the stored workflow cannot be read.
        """
        backend = app.runtime.backend
        # a root sent before nodes were indexed is only tracked: try the id itself
        root_id = live.root_of(backend, task_id) or task_id
        dag = live.find(app, root_id)
        if dag is not None:
            return cls(app, root_id, dag)
        record = backend.get(task_id)
        if record is not None:
            raise WorkflowNotFound(
                f"task {task_id} is {record.state}, but no workflow is stored for it (a single "
                f"task, one sent from inside a task, or expired after result_expires)")
        raise WorkflowNotFound(f"nothing is known about {task_id} (wrong id, another app or "
                               f"backend, or expired after result_expires)")

    def graph(self, timeout: float = 0.0) -> nx.DiGraph:
        """The workflow's graph with each node's live ``state`` (and ``result``).

        With ``timeout`` > 0 and some node unfinished, the workers are asked (waiting up to
        ``timeout`` seconds) which nodes they run or hold, shown STARTED or RECEIVED.
        """
        drawn = live.live_graph(self.app, self.dag)
        if timeout > 0 and live.unfinished(self.dag, drawn):
            running = live.running_ids(self.app, self.root_id, timeout)
            drawn = live.live_graph(self.app, self.dag, running)
        drawn.graph["root_id"] = self.root_id
        return drawn

    def render(self, format: str = "text", timeout: float = 0.0) -> Any:
        """The live graph drawn as ``text``, ``dot``, ``mermaid`` or ``svg`` (see
        :func:`flowq.canvas.render.render`)."""
        from flowq.canvas.render import render

        return render(self.graph(timeout), format)

    def progress(self) -> TaskProgress:
        """How many of the workflow's tasks finished, failed and run (one read of their
        records; see :class:`flowq.runtime.live.TaskProgress`)."""
        return live.progress(self.app, self.dag)

    @property
    def state(self) -> str:
        """SUCCESS or FAILURE once every task finished; STARTED once one has a record;
        PENDING before."""
        done = self.progress()
        if done.finished:
            return states.FAILURE if done.failed else states.SUCCESS
        return states.STARTED if done.done or done.running else states.PENDING

    def ready(self) -> bool:
        """Whether every task of the workflow finished (successfully or not)."""
        return self.progress().finished

    def result(self) -> Any:
        """The handle of the workflow's result (an AsyncResult or a GroupResult)."""
        return self.app.result_for(self.dag, root_id=self.root_id)

    def resume(self) -> Any:
        """Run again what failed or never ran, keeping every stored success, and return the
        handle of the workflow's result (see :mod:`flowq.runtime.resume` for how it
        decides): ``app.workflow(root_id).resume().get()``.

        Raises :class:`~flowq.exceptions.ResumeRefused` when the workflow is still
        running, finished successfully, was revoked, or is being resumed right now.
        """
        from flowq.runtime.resume import resume

        return resume(self.app, self.root_id).result

    def __repr__(self) -> str:
        return f"<LiveWorkflow {self.root_id} ({len(self.dag)} nodes)>"
