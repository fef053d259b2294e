"""A workflow stored by reference lives as long as the messages that refer to it."""

from __future__ import annotations

import time

from flowq.canvas.dag import TASK, Node, Workflow
from flowq.runtime.backends.memory import MemoryBackend
from flowq.runtime.message import Outgoing
from flowq.runtime.workflows import WorkflowStore, blob_key


def large_workflow() -> Workflow:
    return Workflow("seed", tuple(Node(TASK, f"tasks.step_{i}") for i in range(50)), 0)


def referring(carried_headers: dict, eta: float | None) -> Outgoing:
    return Outgoing("q", {"id": "x", **carried_headers}, b"[]", "application/json", "utf-8",
                    eta=eta)


def test_a_stored_workflow_outlives_the_furthest_eta_that_refers_to_it():
    # Given a workflow stored by reference with a 0.5 s life
    backend = MemoryBackend()
    store = WorkflowStore(backend, inline_limit=64, max_nodes=1000, expires=0.5)
    carried = store.carry(large_workflow())
    key = blob_key(carried.headers["wf_ref"])
    # When a step is published to run 2 s from now
    store.keep_alive([referring(carried.headers, time.time() + 2)])
    time.sleep(1.0)
    # Then the workflow is still there after its first life is over
    assert backend.get_blob(key) is not None
    assert store.load(carried.headers, "tasks.step_0", "seed").workflow == carried.workflow


def test_without_a_referring_message_a_stored_workflow_expires():
    backend = MemoryBackend()
    store = WorkflowStore(backend, inline_limit=64, max_nodes=1000, expires=0.3)
    carried = store.carry(large_workflow())
    store.keep_alive([referring({}, None)])  # a message without a reference touches nothing
    time.sleep(0.6)
    assert backend.get_blob(blob_key(carried.headers["wf_ref"])) is None
