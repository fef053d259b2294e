"""The connections and helpers one process needs to send and advance workflows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flowq.runtime.advance import Advancer
from flowq.runtime.backends import backend_from_url
from flowq.runtime.backends.base import ResultBackend
from flowq.runtime.outgoing import MessageBuilder
from flowq.runtime.publisher import Publisher
from flowq.runtime.workflows import WorkflowStore

if TYPE_CHECKING:
    from flowq.app import Flowq


class Runtime:
    """Backend, publisher, workflow store and advancer of one process."""

    def __init__(self, app: Flowq, backend: ResultBackend | None = None):
        conf = app.conf
        self.backend = backend or backend_from_url(conf.result_backend, data_dir=conf.data_dir)
        self.publisher = Publisher(conf, self.backend)
        self.workflows = WorkflowStore(self.backend, conf.workflow_inline_limit,
                                       conf.workflow_max_nodes, conf.result_expires)
        self.builder = MessageBuilder(conf, app.tasks.get)
        self.advancer = Advancer(self.backend, app.result_codec, self.builder,
                                 self.publisher.publish, conf.result_expires)

    def close(self) -> None:
        self.publisher.close()
        self.backend.close()
