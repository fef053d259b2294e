"""Prometheus metrics scraped from a real worker (prefork, Redis database 14): counts of
what it ran, run times, chord completions, and gauges of its pool and queue."""

from __future__ import annotations

import socket
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flowq import chord
from tests.integration import app as tasks
from tests.integration import observe_tasks, semantics_tasks
from tests.integration.harness import Cluster, wait_for

pytestmark = pytest.mark.timeout(120)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


PORT = _free_port()
WORKER_ARGS = ("--metrics-port", str(PORT), "-E")  # with task events on too: both see all
WORKER_ENV = {"FLOWQ_TEST_PREFETCH": "1"}  # a window of 2: the rest waits in the queue
ADD, FAIL, TSUM = tasks.add.name, tasks.fail.name, tasks.tsum.name
FLAKY = semantics_tasks.flaky.name


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the worker's endpoint: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_a_scrape_counts_what_the_worker_ran(db14: Cluster) -> None:
    before = scrape()
    # Given tasks that succeed, fail, retry once, and a chord, all finished
    assert [tasks.add.delay(i, i).get(timeout=30) for i in range(3)] == [0, 2, 4]
    for _ in range(2):
        with pytest.raises(ValueError):
            tasks.fail.delay().get(timeout=30)
    assert semantics_tasks.flaky.delay("v", f"m-{uuid.uuid4().hex[:6]}").get(timeout=30) == "v"
    assert chord([tasks.add.s(i, i) for i in range(3)], tasks.tsum.s()).delay().get(
        timeout=30) == 6

    # When the worker has settled them all (it counts as it settles, just after the result
    # is stored), then the counts are exact
    def settled() -> dict | None:
        samples = scrape()
        return samples if value(samples, "flowq_tasks_succeeded_total", task=TSUM) >= 1 else None

    after = wait_for(settled, timeout=30, what="the chord body to be counted")
    delta = {key: after[key] - before.get(key, 0.0) for key in after}
    assert value(delta, "flowq_tasks_received_total", task=ADD) == 6
    assert value(delta, "flowq_tasks_succeeded_total", task=ADD) == 6
    assert value(delta, "flowq_tasks_received_total", task=FAIL) == 2
    assert value(delta, "flowq_tasks_failed_total", task=FAIL) == 2
    assert value(delta, "flowq_tasks_succeeded_total", task=FAIL) == 0
    assert value(delta, "flowq_tasks_received_total", task=FLAKY) == 2
    assert value(delta, "flowq_tasks_retried_total", task=FLAKY) == 1
    assert value(delta, "flowq_tasks_succeeded_total", task=FLAKY) == 1
    assert value(delta, "flowq_tasks_succeeded_total", task=TSUM) == 1
    assert value(delta, "flowq_task_runtime_seconds_count", task=ADD) == 6
    assert value(delta, "flowq_task_runtime_seconds_count", task=FAIL) == 2
    assert 0 < value(delta, "flowq_task_runtime_seconds_sum", task=ADD) < 30
    assert value(delta, "flowq_chord_completions_total") == 1
    assert value(after, "flowq_pool_processes") == 2


def test_gauges_show_a_busy_pool_and_a_waiting_queue(db14: Cluster) -> None:
    gate = f"gate-{uuid.uuid4().hex[:6]}"
    # Given both pool processes held by gated tasks, 2 more messages held by the worker
    # (its prefetch window) and 3 more waiting in the queue
    busy = [observe_tasks.gated.delay(i, token=gate) for i in range(2)]
    waiting = [tasks.add.delay(i, 1) for i in range(5)]

    def full() -> dict | None:
        samples = scrape()
        seen = (value(samples, "flowq_pool_busy_processes"),
                value(samples, "flowq_tasks_reserved"),
                value(samples, "flowq_queue_length", queue=db14.queue))
        return samples if seen == (2, 2, 3) else None

    samples = wait_for(full, timeout=30, what="2 busy, 2 reserved, 3 queued", interval=0.5)
    assert value(samples, "flowq_pool_utilisation") == 1.0
    # When the gate opens, everything runs and the queue empties
    db14.open_gate(gate)
    assert [r.get(timeout=30) for r in busy] == [0, 1]
    assert [r.get(timeout=30) for r in waiting] == [1, 2, 3, 4, 5]

    def idle() -> dict | None:
        samples = scrape()
        seen = (value(samples, "flowq_pool_busy_processes"),
                value(samples, "flowq_queue_length", queue=db14.queue))
        return samples if seen == (0, 0) else None

    drained = wait_for(idle, timeout=30, what="the queue to drain", interval=0.5)
    assert value(drained, "flowq_pool_utilisation") == 0.0
