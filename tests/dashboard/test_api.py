"""The dashboard's JSON API over HTTP, against a real worker and a real dashboard process."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flowq import chain, chord, states
from tests.dashboard.conftest import DashboardProcess
from tests.integration.app import add, app, fail, tsum
from tests.integration.harness import Cluster, wait_for
from tests.integration.observe_tasks import flaky

pytestmark = pytest.mark.timeout(120)


def get(dashboard: DashboardProcess, path: str, **kwargs: Any) -> Any:
    response = httpx.get(dashboard.url + path, timeout=10, **kwargs)
    response.raise_for_status()
    return response.json()


def root_of(handle: Any) -> str:
    return str(handle.root_id)


def listed(dashboard: DashboardProcess, root_id: str) -> dict[str, Any] | None:
    return next((w for w in get(dashboard, "/api/workflows")["workflows"]
                 if w["root_id"] == root_id), None)


def test_workers_show_name_status_pool_processed_and_load(
        cluster: Cluster, dashboard: DashboardProcess) -> None:
    assert add.delay(1, 2).get(timeout=20) == 3

    def ours() -> dict[str, Any] | None:
        rows = get(dashboard, "/api/workers")["workers"]
        row = next((w for w in rows if w["name"].startswith("dash-")), None)
        return row if row and row.get("pool") and row["processed"] >= 1 else None

    worker = wait_for(ours, 20, "the worker's stats on the dashboard")
    assert (worker["status"], worker["concurrency"], worker["pool"]) == ("online", 2, "prefork")
    assert worker["load"] is not None and 0 <= worker["load"] <= 1
    assert len(worker["loadavg"]) == 3
    assert worker["queues"] == [cluster.queue]


def test_queues_show_their_length(cluster: Cluster, dashboard: DashboardProcess) -> None:
    # Given the worker no longer consuming its queue, three messages wait in it
    app.control.cancel_consumer(cluster.queue, reply=True)
    try:
        handles = [add.delay(n, n) for n in range(3)]
        waiting = wait_for(lambda: (q := {q["name"]: q for q in get(dashboard, "/api/queues")[
            "queues"]}).get(cluster.queue, {}).get("messages") == 3 and q, 20,
            "the dashboard to count 3 waiting messages")
        assert waiting[f"{cluster.queue}.dead"] == {
            "name": f"{cluster.queue}.dead", "messages": 0, "dead_letter": True}
    finally:
        app.control.add_consumer(cluster.queue, reply=True)
    assert [h.get(timeout=20) for h in handles] == [0, 2, 4]


def test_a_workflow_shows_its_nodes_edges_and_each_nodes_call_and_outcome(
        cluster: Cluster, dashboard: DashboardProcess) -> None:
    handle = chord([add.s(i, i) for i in range(3)] + [fail.s(7)], tsum.s()).delay()
    with pytest.raises(Exception, match="expected failure"):
        handle.get(timeout=20)
    root_id = root_of(handle)
    summary = wait_for(lambda: (w := listed(dashboard, root_id)) and w["done"] == w["total"]
                       and w, 20, "the chord among the recent workflows")
    assert (summary["state"], summary["done"], summary["total"], summary["failed"]) == (
        states.FAILURE, 6, 6, 3)  # 4 parts, the join and the body
    assert (summary["shape"], summary["first"]) == ("chord", add.name)

    doc = get(dashboard, f"/api/workflows/{root_id}")
    assert [n["path"] for n in doc["nodes"]] == [
        "chord.header[0]", "chord.header[1]", "chord.header[2]", "chord.header[3]", "chord",
        "chord.body"]
    assert [n["state"] for n in doc["nodes"]] == [states.SUCCESS] * 3 + [states.FAILURE] * 3
    assert sorted(map(tuple, doc["edges"])) == [(0, 4, "member"), (1, 4, "member"),
                                                (2, 4, "member"), (3, 4, "member"),
                                                (4, 5, "result")]
    ok = get(dashboard, f"/api/workflows/{root_id}/nodes/2")
    assert (ok["task"], ok["args"], ok["result"], ok["traceback"]) == (add.name, "[2, 2]", "4",
                                                                      None)
    failed = get(dashboard, f"/api/workflows/{root_id}/nodes/3")
    assert failed["exception"] == "ValueError: expected failure (7,)"
    assert 'raise ValueError(f"expected failure {args!r}")' in failed["traceback"]
    body = get(dashboard, f"/api/workflows/{root_id}/nodes/5")
    assert body["receives"] == "the list of results of node 4 (join) as first argument"


def test_unknown_workflows_and_nodes_are_404_with_a_reason(dashboard: DashboardProcess) -> None:
    response = httpx.get(dashboard.url + "/api/workflows/nope", timeout=10)
    assert response.status_code == 404
    assert "no workflow with root id nope is tracked" in response.json()["error"]
    handle = chain(add.s(1, 1), add.s(1)).delay()
    handle.get(timeout=20)
    response = httpx.get(f"{dashboard.url}/api/workflows/{root_of(handle)}/nodes/9", timeout=10)
    assert response.status_code == 404


def test_a_stuck_workflow_is_marked_with_the_path_that_waits(
        cluster: Cluster, dashboard: DashboardProcess) -> None:
    lonely = f"{cluster.queue}-lonely"
    handle = chain(add.s(1, 1), add.s(2).set(queue=lonely)).delay()
    root_id = root_of(handle)
    wait_for(lambda: app.control.queue_sizes([lonely])[lonely] == 1, 20, "the second step")
    app.control.purge([lonely])  # its message is lost: nothing will run it
    marked = wait_for(lambda: (w := listed(dashboard, root_id)) and w["stuck"], 20,
                      "the dashboard to mark the workflow stuck")
    assert [(w["path"], w["task"], w["queue"]) for w in marked] == [
        ("chain[1]", add.name, lonely)]
    assert get(dashboard, f"/api/workflows/{root_id}")["stuck"] == marked


def test_the_dashboard_is_read_only_by_default(dashboard: DashboardProcess) -> None:
    response = httpx.post(f"{dashboard.url}/api/tasks/x/revoke", timeout=10,
                          headers={"X-Flowq-Action": "1"})
    assert response.status_code == 404
    assert get(dashboard, "/api/config")["actions"] is False


@pytest.fixture(scope="module")
def guarded(cluster: Cluster) -> Iterator[DashboardProcess]:
    """A dashboard with actions, behind a token given through the environment."""
    process = DashboardProcess(cluster, "--enable-actions", "--refresh", "0.5",
                               env={"FLOWQ_DASHBOARD_TOKEN": "t0ken"})
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


def test_actions_need_the_token_and_the_action_header(guarded: DashboardProcess) -> None:
    handle = add.apply_async((1, 1), countdown=3600)
    url = f"{guarded.url}/api/tasks/{handle.id}/revoke"
    assert httpx.post(url, timeout=10).status_code == 401
    token = {"Authorization": "Bearer t0ken"}
    assert httpx.post(url, headers=token, timeout=10).status_code == 403
    assert httpx.post(url, headers={**token, "X-Flowq-Action": "1",
                                    "Origin": "http://elsewhere.example"},
                      timeout=10).status_code == 403
    assert handle.state == states.PENDING
    answer = httpx.post(url, headers={**token, "X-Flowq-Action": "1"}, timeout=10)
    assert answer.status_code == 200, answer.text
    wait_for(lambda: handle.state == states.REVOKED, 20, "the delayed task to be revoked")


def test_a_whole_workflow_can_be_revoked(guarded: DashboardProcess) -> None:
    handle = chain(add.s(1, 1).set(countdown=3600), add.s(1), add.s(1)).delay()
    root_id = root_of(handle)
    answer = httpx.post(f"{guarded.url}/api/workflows/{root_id}/revoke", timeout=10,
                        headers={"Authorization": "Bearer t0ken", "X-Flowq-Action": "1"})
    assert answer.status_code == 200, answer.text
    done = wait_for(lambda: (t := get(guarded, f"/api/workflows/{root_id}",
                                      headers={"Authorization": "Bearer t0ken"}))["done"] == 3
                    and t, 20, "every node of the revoked workflow to be recorded")
    assert [n["state"] for n in done["nodes"]] == [states.REVOKED, states.FAILURE,
                                                   states.FAILURE]


def test_a_failed_workflow_is_resumed_and_then_refused_once_successful(
        cluster: Cluster, guarded: DashboardProcess) -> None:
    # Given a chord whose member 1 fails the first time only (the ledger says so)
    fail_set = f"{cluster.ledger_prefix}flaky:fail"
    cluster.ledger.sadd(fail_set, "1")
    handle = chord([flaky.s(i) for i in range(3)], tsum.s()).delay()
    with pytest.raises(Exception, match="flaky 1 told to fail"):
        handle.get(timeout=20)
    cluster.ledger.srem(fail_set, "1")
    token = {"Authorization": "Bearer t0ken", "X-Flowq-Action": "1"}

    answer = httpx.post(f"{guarded.url}/api/workflows/{handle.root_id}/resume", headers=token,
                        timeout=20)

    assert answer.status_code == 200, answer.text
    assert (answer.json()["rerun"], answer.json()["reused"]) == (2, 2)  # member 1, the body
    assert app.AsyncResult(handle.id).get(timeout=20) == 3
    again = httpx.post(f"{guarded.url}/api/workflows/{handle.root_id}/resume", headers=token,
                       timeout=20)
    assert again.status_code == 409
    assert "finished successfully: nothing to resume" in again.json()["error"]


def test_a_worker_that_starts_is_listed_and_one_that_stops_turns_offline(
        cluster: Cluster, dashboard: DashboardProcess) -> None:
    name = f"dash2-{cluster.queue[-6:]}@%h"
    second = cluster.start_worker("-E", "-n", name, concurrency=1)

    def status() -> str | None:
        rows = get(dashboard, "/api/workers")["workers"]
        return next((w["status"] for w in rows if w["name"].startswith("dash2-")), None)

    wait_for(lambda: status() == "online", 20, "the second worker online")
    second.stop()  # a warm shutdown: its worker-offline event says so at once
    wait_for(lambda: status() == "offline", 20, "the second worker offline")
