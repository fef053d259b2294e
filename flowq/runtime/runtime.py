"""The connections and helpers one process needs to send and advance workflows."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

from flowq.canvas.dag import Workflow
from flowq.canvas.validate import validate
from flowq.exceptions import MalformedCanvas

from flowq.runtime import signalling
from flowq.runtime.advance import Advancer
from flowq.runtime.backends import backend_from_url
from flowq.runtime.backends.base import ResultBackend
from flowq.runtime.message import Outgoing
from flowq.runtime.outgoing import MessageBuilder
from flowq.runtime.publisher import Publisher
from flowq.runtime.workflows import WorkflowStore

if TYPE_CHECKING:
    from flowq.app import Flowq


def check_arrival(app: Flowq, workflow: Workflow) -> None:
    """Refuse a received workflow whose steps do not fit this process's tasks (argument
    counts, options) before any of it runs."""
    problems = validate(workflow, app.tasks.get)
    if problems:
        listed = "; ".join(f"{where}: {what}" for where, what in problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise MalformedCanvas(f"workflow does not fit the registered tasks: {listed}{more}")


class Runtime:
    """Backend, publisher, workflow store and advancer of one process."""

    def __init__(self, app: Flowq, backend: ResultBackend | None = None):
        conf = app.conf
        self.backend = backend or backend_from_url(conf.result_backend, data_dir=conf.data_dir)
        self.publisher = Publisher(conf, self.backend)
        self.workflows = WorkflowStore(self.backend, conf.workflow_inline_limit,
                                       conf.workflow_max_nodes, conf.result_expires,
                                       check=functools.partial(check_arrival, app))
        self.builder = MessageBuilder(conf, app.tasks.get)
        self.advancer = Advancer(self.backend, app.result_codec, self.builder,
                                 self.publish, conf.result_expires)

    def publish(self, messages: Sequence[Outgoing]) -> None:
        """Send ``messages``, keeping the stored workflows they refer to alive."""
        self.workflows.keep_alive(messages)
        self.publisher.publish(messages)
        signalling.after_publish(messages)

    def close(self) -> None:
        self.publisher.close()
        self.backend.close()
