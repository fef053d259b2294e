"""Eager runs: a whole workflow executed in this process, as a worker would run it.

Messages are built, serialized and parsed exactly as on the wire, results go to a
private in-memory backend, and the same advancement code decides what runs next, so
an eager run has the worker's semantics (argument passing, chords, failures, retries;
only countdowns and etas are not waited for). Nodes run one at a time from a queue:
no recursion, so a 100,000-step chain runs fine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from flowq.canvas.dag import Workflow
from flowq.runtime.advance import Advancer
from flowq.runtime.backends.memory import MemoryBackend
from flowq.runtime.execute import execute
from flowq.runtime.message import Outgoing, parse
from flowq.runtime.outgoing import MessageBuilder
from flowq.runtime.workflows import WorkflowStore

if TYPE_CHECKING:
    from flowq.app import Flowq


class _LocalQueue:
    """Stands in for the publisher: messages wait in a deque instead of a broker."""

    def __init__(self) -> None:
        self.pending: deque[Outgoing] = deque()

    def publish(self, messages: Sequence[Outgoing]) -> None:
        self.pending.extend(messages)


class EagerRuntime:
    """The runtime of one eager run: in-memory backend, local queue."""

    def __init__(self, app: Flowq):
        conf = app.conf
        self.backend = MemoryBackend()
        self.publisher = _LocalQueue()
        self.publish = self.publisher.publish  # nothing stored outlives an eager run
        self.workflows = WorkflowStore(self.backend, conf.workflow_inline_limit,
                                       conf.workflow_max_nodes, None)
        self.builder = MessageBuilder(conf, app.tasks.get, announce=False)
        self.advancer = Advancer(self.backend, app.result_codec, self.builder,
                                 self.publish, None)


def run_eagerly(app: Flowq, workflow: Workflow, throw: bool = False) -> Any:
    """Run ``workflow`` to completion here; return its result handle (having raised the
    workflow's exception, if it failed, with ``throw``)."""
    from flowq.task import current_request

    runtime = EagerRuntime(app)
    caller = current_request()
    root_id = caller.root_id if caller and caller.root_id else workflow.seed
    runtime.advancer.start(runtime.workflows.carry(workflow), root_id,
                           caller.id if caller else None)
    accept = app.accepted_content
    pending = runtime.publisher.pending
    while pending:
        message = pending.popleft()
        request = parse(message.headers, message.body, message.content_type,
                        message.content_encoding, accept)
        execute(app, request, eager=True, runtime=runtime)
    handle = app.result_for(workflow, backend=runtime.backend, root_id=root_id)
    if throw:
        handle.get()
    return handle
