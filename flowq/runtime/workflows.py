"""How a workflow travels: inline in the headers, or stored once by content hash.

A workflow whose encoding is at most ``workflow_inline_limit`` bytes rides in every
message's ``wf`` header. A larger one is stored once in the result backend under the
SHA-256 of its encoding and messages carry only ``wf_ref``, so a chain of n steps
costs O(n) bytes in total instead of O(n²), and chord header tasks never carry copies
of a large body. A stored workflow lives ``result_expires`` past the furthest ETA of
any message sent referring to it, so a long-running workflow never outlives its graph.
Workers keep decoded workflows in a small LRU cache.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from flowq.canvas import wire
from flowq.canvas.dag import TASK, Node, Workflow
from flowq.exceptions import MalformedCanvas
from flowq.runtime.backends.base import ResultBackend
from flowq.runtime.message import Outgoing

_CACHE_SIZE = 256


@attrs.frozen(slots=True)
class Carried:
    """A workflow and the headers that carry it (``wf`` or ``wf_ref``; empty if trivial)."""

    workflow: Workflow
    headers: dict[str, Any]


def blob_key(ref: str) -> str:
    return f"wf:{ref}"


def is_trivial(workflow: Workflow) -> bool:
    """A lone task with nothing attached: its message needs no workflow header."""
    return len(workflow.nodes) == 1 and not workflow.scopes and workflow.nodes[0].kind == TASK


def single(task: str, seed: str) -> Workflow:
    """The one-node workflow of a message sent without a workflow header."""
    return Workflow(seed, (Node(TASK, task),), 0)


class WorkflowStore:
    """Chooses inline or by-reference transport and decodes (with a cache) on arrival."""

    def __init__(self, backend: ResultBackend, inline_limit: int, max_nodes: int,
                 expires: float | None, check: Callable[[Workflow], None] | None = None):
        self.backend = backend
        self.inline_limit = inline_limit
        self.max_nodes = max_nodes
        self.expires = expires
        self.check = check  # run on every workflow decoded here; raises MalformedCanvas
        self._cache: OrderedDict[str, Workflow] = OrderedDict()
        self._alive_until: OrderedDict[str, float] = OrderedDict()  # ref -> life we gave it
        self._lock = threading.Lock()

    def carry(self, workflow: Workflow) -> Carried:
        """The headers for ``workflow``, storing it in the backend if it is large."""
        if is_trivial(workflow):
            return Carried(workflow, {})
        encoded = wire.encode(workflow)
        text = json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)
        if len(text) <= self.inline_limit:
            return Carried(workflow, {"wf": encoded})
        ref = hashlib.sha256(text.encode()).hexdigest()
        self.backend.put_blob(blob_key(ref), text.encode(), expires=self.expires)
        self._remember(ref, workflow)
        if self.expires is not None:
            self._bounded_set(self._alive_until, ref, time.time() + self.expires)
        return Carried(workflow, {"wf_ref": ref})

    def keep_alive(self, messages: Sequence[Outgoing]) -> None:
        """Let every stored workflow ``messages`` refer to live ``expires`` past the
        furthest ETA among them; a workflow is touched again only once half of the
        life last given to it has gone, so a long chain costs few extra writes."""
        if self.expires is None:
            return
        now = time.time()
        furthest: dict[str, float] = {}
        for message in messages:
            ref = message.headers.get("wf_ref")
            if ref:
                furthest[ref] = max(furthest.get(ref, now), message.eta or now)
        for ref, due in furthest.items():
            with self._lock:
                given = self._alive_until.get(ref, 0.0)
            if given >= due + self.expires / 2:
                continue
            self.backend.touch_blob(blob_key(ref), due + self.expires - now)
            self._bounded_set(self._alive_until, ref, due + self.expires)

    def load(self, headers: Any, task: str, seed: str) -> Carried:
        """The workflow a received message belongs to. Raises MalformedCanvas."""
        ref = headers.get("wf_ref")
        if ref:
            return Carried(self._by_ref(ref), {"wf_ref": ref})
        inline = headers.get("wf")
        if inline is None:
            return Carried(single(task, seed), {})
        # keyed by the exact content: a header that reuses a seen seed with another graph
        # is decoded (and checked) on its own
        key = json.dumps(inline, separators=(",", ":"), default=str)
        workflow = self._cached(key)
        if workflow is None:
            workflow = self._decoded(lambda: wire.decode(inline, max_nodes=self.max_nodes))
            self._remember(key, workflow)
        return Carried(workflow, {"wf": inline})

    def _decoded(self, decode: Callable[[], Workflow]) -> Workflow:
        workflow = decode()
        if self.check is not None:
            self.check(workflow)
        return workflow

    def _by_ref(self, ref: str) -> Workflow:
        workflow = self._cached(ref)
        if workflow is not None:
            return workflow
        data = self.backend.get_blob(blob_key(ref))
        if data is None:
            raise MalformedCanvas(f"workflow {ref[:12]}… is not in the result backend "
                                  f"(expired after result_expires, or never stored)")
        if hashlib.sha256(data).hexdigest() != ref:
            raise MalformedCanvas(f"workflow {ref[:12]}… does not match its content hash")
        workflow = self._decoded(lambda: wire.loads(data, max_nodes=self.max_nodes))
        self._remember(ref, workflow)
        return workflow

    def _cached(self, key: str) -> Workflow | None:
        with self._lock:
            workflow = self._cache.get(key)
            if workflow is not None:
                self._cache.move_to_end(key)
            return workflow

    def _remember(self, key: str, workflow: Workflow) -> None:
        self._bounded_set(self._cache, key, workflow)

    def _bounded_set(self, table: OrderedDict[str, Any], key: str, value: Any) -> None:
        """Set ``table[key]``, dropping the oldest entries beyond ``_CACHE_SIZE``."""
        with self._lock:
            table[key] = value
            table.move_to_end(key)
            while len(table) > _CACHE_SIZE:
                table.popitem(last=False)
