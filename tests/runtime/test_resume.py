"""Resume on an in-process worker (memory broker and backend, threads pool): what runs
again, what is kept, chord and fanout state, errbacks, refusals, and a resume that died
half-way. The real-worker test of a chord of 1,000 is tests/integration/test_resume.py."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from flowq import Flowq, chord, fanout, group, states
from flowq.exceptions import ResumeRefused
from flowq.runtime import resume as resume_module
from flowq.runtime.advance import Advancer
from flowq.runtime.worker import Worker

pytestmark = pytest.mark.timeout(60)

app = Flowq("resume-test", broker="memory://", backend="memory://resume-test",
            task_default_queue="resume-test")
RUNS: Counter[str] = Counter()
FAILING: set[str] = set()
GATE = threading.Event()


@app.task
def step(name: str, value: int = 0) -> int:
    """Count the run of ``name``; fail while ``name`` is in FAILING."""
    RUNS[name] += 1
    if name in FAILING:
        raise ValueError(f"{name} told to fail")
    return value + 1


@app.task
def follow(value: int, name: str) -> int:
    RUNS[name] += 1
    if name in FAILING:
        raise ValueError(f"{name} told to fail")
    return value + 10


@app.task
def total(values: list[int], name: str = "body") -> list[int]:
    RUNS[name] += 1
    return [len(values), sum(values)]


@app.task
def listing(n: int) -> list[int]:
    return list(range(n))


@app.task
def item(value: int) -> int:
    RUNS[f"item{value}"] += 1
    if f"item{value}" in FAILING:
        raise ValueError(f"item {value} told to fail")
    return value * 100


@app.task
def noted(failed_id: str) -> str:
    RUNS["errback"] += 1
    return failed_id


@app.task
def gated() -> str:
    GATE.wait(30)
    return "opened"


@pytest.fixture(autouse=True)
def worker() -> Iterator[None]:
    RUNS.clear()
    FAILING.clear()
    GATE.clear()
    instance = Worker(app, pool="threads", concurrency=2, queues=["resume-test"])
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    yield
    GATE.set()
    instance.stop()
    thread.join(timeout=20)


def failed(handle: Any) -> None:
    """Wait for ``handle`` to fail and for its whole workflow to finish (a failure fails
    what follows at once, while parallel tasks still run)."""
    with pytest.raises(ValueError):
        handle.get(timeout=20)
    flow = handle.workflow()
    for _ in range(400):
        if flow.ready():
            return
        threading.Event().wait(0.05)
    raise AssertionError(f"{flow} never finished")


def test_a_chain_runs_again_from_the_step_that_failed() -> None:
    FAILING.add("b")
    result = (step.s("a", 1) | follow.s("b") | follow.s("c")).delay()
    failed(result)
    FAILING.clear()
    resumed = result.workflow().resume()
    assert resumed.get(timeout=20) == 22
    assert RUNS == {"a": 1, "b": 2, "c": 1}
    assert result.get(timeout=1) == 22  # the handle held from the first send sees it too


def test_a_chord_reruns_its_failed_members_and_the_body_sees_every_result() -> None:
    names = [f"m{i}" for i in range(20)]
    FAILING.update({"m3", "m11", "m17"})
    result = chord([step.s(name, i) for i, name in enumerate(names)], total.s()).delay()
    failed(result)
    assert RUNS["body"] == 0
    FAILING.clear()
    done = resume_module.resume(app, result.id)  # any node's id finds the workflow
    assert (done.rerun, done.reused, done.sent, done.resumes) == (4, 17, 3, 1)
    assert done.result.get(timeout=20) == [20, sum(range(1, 21))]
    assert [RUNS[name] for name in names] == [2 if name in ("m3", "m11", "m17") else 1
                                              for name in names]
    assert RUNS["body"] == 1
    flow = app.workflow(result.root_id)
    assert flow.state == states.SUCCESS and flow.progress().failed == 0
    tracked = app.backend.tracked_workflows([result.root_id])[0].progress
    assert {state: n for state, n in tracked.counts.items() if n} == {states.SUCCESS: 22}


def test_nested_groups_and_a_chain_member_resume_where_they_stopped() -> None:
    FAILING.add("inner-b")
    canvas = chord([group(step.s("inner-a"), step.s("inner-b")),
                    step.s("x") | follow.s("y")], total.si([], "body"))
    result = canvas.delay()
    failed(result)
    FAILING.clear()
    assert app.workflow(result.id).resume().get(timeout=20) == [0, 0]
    assert RUNS == {"inner-a": 1, "inner-b": 2, "x": 1, "y": 1, "body": 1}


def test_a_fanout_reruns_only_its_failed_items() -> None:
    FAILING.update({"item1", "item4"})
    result = (listing.s(6) | fanout(item.s()) | total.s()).delay()
    failed(result)
    FAILING.clear()
    assert result.workflow().resume().get(timeout=20) == [6, 1500]
    assert [RUNS[f"item{i}"] for i in range(6)] == [1, 2, 1, 1, 2, 1]
    assert RUNS["body"] == 1


def test_errbacks_run_again_when_the_resumed_workflow_fails_again() -> None:
    FAILING.add("b")
    result = (step.s("a") | follow.s("b")).on_error(noted.s()).delay()
    failed(result)
    flow = result.workflow()
    assert wait_for_runs("errback", 1)  # once, for the first failure
    failed(flow.resume())
    assert wait_for_runs("errback", 2)
    FAILING.clear()
    assert flow.resume().get(timeout=20) == 11
    assert RUNS == {"a": 1, "b": 3, "errback": 2}


def wait_for_runs(name: str, count: int) -> bool:
    for _ in range(400):
        if RUNS[name] >= count:
            return RUNS[name] == count
        threading.Event().wait(0.05)
    return False


def test_a_running_a_successful_and_a_revoked_workflow_are_refused() -> None:
    running = (gated.si() | step.si("after")).delay()
    with pytest.raises(ResumeRefused, match=r"is still running: 2 of its nodes have not "
                                            r"finished \(e\.g\. chain\[0\]"):
        running.workflow().resume()
    GATE.set()
    assert running.get(timeout=20) == 1
    with pytest.raises(ResumeRefused, match="finished successfully: nothing to resume"):
        running.workflow().resume()
    FAILING.add("r")
    revoked = (step.s("r") | step.si("s")).delay()
    failed(revoked)
    app.backend.revoke([revoked.root_id], expires=60)
    with pytest.raises(ResumeRefused, match="was revoked; a resume does not undo"):
        revoked.workflow().resume()


def test_resuming_twice_runs_nothing_twice() -> None:
    FAILING.add("b")
    result = (step.s("a") | follow.s("b") | gated.si()).delay()
    failed(result)
    FAILING.clear()
    again = result.workflow().resume()
    with pytest.raises(ResumeRefused, match="still running"):
        result.workflow().resume()
    GATE.set()
    assert again.get(timeout=20) == "opened"
    with pytest.raises(ResumeRefused, match="finished successfully"):
        result.workflow().resume()
    assert RUNS == {"a": 1, "b": 2}


def test_a_resume_held_by_another_caller_is_refused() -> None:
    FAILING.add("b")
    result = (step.s("a") | follow.s("b")).delay()
    failed(result)
    assert app.backend.acquire_lease(resume_module.lease_key(result.root_id), "other", 30)
    with pytest.raises(ResumeRefused, match="being resumed by another call right now"):
        result.workflow().resume()


def test_a_resume_that_died_half_way_is_completed_by_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a resume that reset the failed nodes and died before publishing them
    FAILING.add("b")
    result = (step.s("a") | follow.s("b") | follow.s("c")).delay()
    failed(result)
    FAILING.clear()
    crash = RuntimeError(f"died {uuid.uuid4().hex[:4]}")

    def die(*args: object, **kwargs: object) -> None:
        raise crash

    with monkeypatch.context() as patch:
        patch.setattr(Advancer, "restart", die)
        with pytest.raises(RuntimeError, match=str(crash)):
            result.workflow().resume()
    # (its half-reset workflow looks unfinished: its failed nodes have no record now)
    assert app.workflow(result.root_id).progress().done == 1
    # When resumed again, the work is completed (not refused as running), once
    done = resume_module.resume(app, result.root_id)
    assert done.resumes == 1
    assert done.result.get(timeout=20) == 21
    assert RUNS == {"a": 1, "b": 2, "c": 1}
