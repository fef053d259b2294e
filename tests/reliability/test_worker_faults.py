"""A. Worker and process faults, on real workers (reliability-scenarios.md, family A).

Child-level faults (a pool child dies, a time limit fires) share one worker per
configuration; faults that stop a whole worker start their own. Every test ends with
the total-queue checker over the ledger the fault tasks write.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from flowq import chord, states
from flowq.exceptions import (
    ConfigurationError,
    InvalidWorkflow,
    TimeLimitExceeded,
    WorkerLostError,
)
from tests.integration.app import app
from tests.reliability.checker import Ledger, assert_total_queue
from tests.reliability.conftest import (
    LEASE,
    FaultCluster,
    dead_letters,
    queue_size,
    redeliveries_counted,
    release,
    require_servers,
    scratch_app,
    send_workflow,
    task_ids,
)
from tests.reliability.fault_tasks import (
    body,
    early_step,
    late_step,
    overrun,
    soft_catcher,
    soft_ignorer,
    step,
)
from tests.reliability.faults import TaskFault, WorkerKill, kill, pid_alive, pool_pids, wait_for

pytestmark = pytest.mark.timeout(90)
T = 30  # seconds any one result may take
CONFIGS = ["redis", "amqp", "embedded"]
Fault = TaskFault.Method


def kind() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


# -- one worker per configuration for faults inside pool children -------------------------------


@pytest.fixture(scope="module", params=CONFIGS)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[FaultCluster]:
    require_servers(request.param)
    instance = FaultCluster(request.param, tmp_path_factory.mktemp(f"a-{request.param}"))
    instance.configure(app)
    instance.pool = instance.start(concurrency=2)  # type: ignore[attr-defined]
    yield instance
    instance.cleanup()
    app.close()


#: For faults that do not depend on the broker: run them on the Redis worker only.
REDIS_ONLY = pytest.mark.parametrize("shared", ["redis"], indirect=True)


@pytest.fixture
def pool(shared: FaultCluster) -> FaultCluster:
    """The module's worker, with the test process pointed at it again (a fresh cluster in
    another test of this module may have repointed it)."""
    shared.configure(app)
    assert shared.pool.alive(), shared.pool.log()  # type: ignore[attr-defined]
    return shared


# -- A1 / A2: a pool child dies ------------------------------------------------------------------


def test_sigkill_child_mid_task_redelivers_once(pool):
    """A1: the child running a late-acked task is SIGKILLed; the message comes back."""
    k = kind()
    ledger = Ledger(pool, k)
    result = step.apply_async((10,), {"fault": Fault.BLOCK, "kind": k})
    (first,) = wait_for(ledger.starts, T, "the task to start")
    kill(first.pid)

    assert result.get(timeout=T) == 11
    completed = ledger.settle([result.id])
    starts = ledger.starts()
    assert [s.attempt for s in starts] == [1, 2]
    assert starts[1].pid != first.pid and not pid_alive(first.pid)
    assert len(ledger.ends()) == 1 and result.state == states.SUCCESS
    assert redeliveries_counted(pool, result.id) == 1  # the second delivery; the first is free
    processes = wait_for(lambda: [p for p in pool_pids(app, pool.pool.hostname)
                                  if p != first.pid], 5, "the child to be replaced")
    assert len(processes) == 2  # the pool is back to full size
    assert_total_queue([result.id], completed)


def test_sigkill_chord_member_mid_task_body_runs_once(pool):
    """A1 as a chord member: the member is redelivered and the body runs once."""
    k, kb = kind(), kind()
    ledger, bodies = Ledger(pool, k), Ledger(pool, kb)
    workflow, result = send_workflow(chord(
        [step.s(1, fault=Fault.BLOCK, kind=k), step.s(2, kind=k), step.s(3, kind=k)],
        body.s(kind=kb)))
    blocked = wait_for(lambda: [s for s in ledger.starts() if s.attempt == 1
                                and s.task_id == workflow.node_id(0)], T, "member 0 to start")
    kill(blocked[0].pid)

    assert result.get(timeout=T) == 2 + 3 + 4
    members = task_ids(result.parent)
    completed = ledger.settle(members)
    assert len(bodies.settle([result.id], quiet=0)) == 1
    assert_total_queue(members, completed)
    assert_total_queue([result.id], bodies.completed())


EXITS = pytest.mark.parametrize("exit_fault", [Fault.OS_EXIT, Fault.SYSTEM_EXIT],
                                ids=["os_exit", "system_exit"])


@EXITS
def test_task_exiting_its_process_with_reject_on_worker_lost_is_redelivered(pool, exit_fault):
    """A2: ``os._exit(1)`` or ``raise SystemExit`` in a late-acked task that requeues on a
    lost worker is handled as A1: the child is gone, the message runs again, once."""
    k = kind()
    ledger = Ledger(pool, k)
    result = step.apply_async((5,), {"fault": exit_fault, "kind": k})
    assert result.get(timeout=T) == 6
    completed = ledger.settle([result.id])
    first, second = ledger.starts()
    assert (first.attempt, second.attempt) == (1, 2) and first.pid != second.pid
    # billiard's child lingers a second after reporting its death
    wait_for(lambda: not pid_alive(first.pid), 5, "the exited child to be gone")
    assert_total_queue([result.id], completed)


@REDIS_ONLY
@EXITS
@pytest.mark.parametrize("task", [late_step, early_step], ids=["acks_late", "early_ack"])
def test_task_exiting_its_process_fails_with_worker_lost(pool, task, exit_fault):
    """A2: without ``reject_on_worker_lost`` a task that ends its process fails with
    WorkerLostError, once: never a success, never run again."""
    k = kind()
    ledger = Ledger(pool, k)
    result = task.apply_async((5,), {"fault": exit_fault, "kind": k})
    with pytest.raises(WorkerLostError):
        result.get(timeout=10)
    time.sleep(1.0)  # nothing comes back afterwards
    assert len(ledger.starts()) == 1 and ledger.ends() == []
    assert f"{result.id}] succeeded" not in pool.pool.log()
    assert_total_queue([result.id], [result.id] if result.failed() else [])


def test_global_acks_late_settings_apply_to_tasks_that_set_nothing(fault_cluster):
    """A2 with ``task_acks_late`` and ``task_reject_on_worker_lost`` set for the app: a
    task that sets neither (``early_step``) is acked late and requeued when its process
    exits, so it runs again and succeeds."""
    fault_cluster.start(env={"FLOWQ_TEST_ACKS_LATE": "1"})
    k = kind()
    ledger = Ledger(fault_cluster, k)
    result = early_step.apply_async((5,), {"fault": Fault.OS_EXIT, "kind": k})
    assert result.get(timeout=T) == 6
    assert [start.attempt for start in ledger.starts()] == [1, 2]


# -- A4 / A5: killed after the body returned, before the ack -----------------------------------

@pytest.mark.parametrize("shared", ["redis", "embedded"], indirect=True)
@pytest.mark.parametrize("point", [
    Fault.KILL_BEFORE_STORE,
    Fault.KILL_BEFORE_BODY,
    Fault.KILL_BEFORE_FLAG,
    Fault.KILL_AFTER_RECORD,
])
def test_kill_after_member_body_returns_counts_it_once(pool, point):
    """A4/A5: the member that completes the chord is killed at ``point``, after its
    body returned and before its ack. Killed before its result was stored, it runs
    again; killed after, its redelivery is recognised and not run again (its effects are
    replayed only if they were not all sent). Either way the chord counts it once and the
    body runs once, with the members' results in order."""
    k, kb = kind(), kind()
    ledger, bodies = Ledger(pool, k), Ledger(pool, kb)
    # Member 2 waits until the others' parts are recorded, so it completes the chord.
    workflow, result = send_workflow(chord(
        [step.s(1, kind=k), step.s(2, kind=k),
         step.s(3, fault=point, kind=k, wait_for=["parts", 2])], body.s(kind=kb)))

    assert result.get(timeout=T) == 2 + 3 + 4
    faulty = workflow.node_id(2)
    runs_again = point is Fault.KILL_BEFORE_STORE
    wait_for_redelivery(pool, ledger, faulty, runs_again)
    members = task_ids(result.parent)
    completed = ledger.settle(members, quiet=0.2)
    assert [s.attempt for s in ledger.starts() if s.task_id == faulty] == (
        [1, 2] if runs_again else [1])
    bodies.settle([result.id], quiet=0.5)
    assert bodies.completed() == [result.id]  # the body ran exactly once
    assert pool.ledger_list(f"{kb}:inputs") == ["[2, 3, 4]"]
    assert_total_queue(members, completed, max_completions={faulty: 2})
    assert_total_queue([result.id], bodies.completed())


def wait_for_redelivery(pool: FaultCluster, ledger: Ledger, task_id: str,
                        runs_again: bool) -> None:
    """Wait until the killed task's message came back: as a second run, or (when its
    result was already stored) as a delivery the worker skipped."""
    if runs_again:
        wait_for(lambda: [s for s in ledger.starts() if s.task_id == task_id][1:], T,
                 "the killed task's redelivery to run")
    else:
        wait_for(lambda: f"[{task_id}] skipped" in pool.pool.log(), T,  # type: ignore[attr-defined]
                 "the killed task's redelivery to be skipped")


@REDIS_ONLY
def test_kill_between_store_and_next_publish_sends_next_step_once(pool):
    """A4 in a chain: killed after its result is stored but before the next step is
    published; the redelivery publishes the next step, which runs once."""
    k = kind()
    ledger = Ledger(pool, k)
    workflow, result = send_workflow(
        step.s(1, kind=k) | step.s(fault=Fault.KILL_BEFORE_NEXT, kind=k) | step.s(kind=k))
    assert result.get(timeout=T) == 4
    ids = task_ids(result)
    faulty = workflow.node_id(1)
    wait_for_redelivery(pool, ledger, faulty, runs_again=False)
    completed = ledger.settle(ids)
    assert [s.attempt for s in ledger.starts() if s.task_id == faulty] == [1]
    assert_total_queue(ids, completed, max_completions={faulty: 2})
    # chain order: each step starts after its parent ended
    ends = {e.task_id: e.at for e in ledger.ends()}
    starts = {s.task_id: s.at for s in ledger.starts()}
    assert starts[workflow.node_id(2)] >= ends[workflow.node_id(1)]


# -- A7 / A8: time limits ------------------------------------------------------------------------


def test_hard_time_limit_kills_and_replaces_the_child(fault_cluster):
    """A7: past its hard limit the child is killed and replaced; the result is
    TimeLimitExceeded; a task running beside it is unaffected; the log names both.
    (A worker of its own: a child that outlives its kill would disturb other tests.)"""
    worker = fault_cluster.start(concurrency=2)
    k = kind()
    ledger = Ledger(fault_cluster, k)
    neighbour = step.apply_async((1,), {"kind": k, "sleep": 1.5})
    result = overrun.delay(5)
    assert neighbour.get(timeout=T) == 2
    with pytest.raises(TimeLimitExceeded, match=r"hard time limit \(1s\) exceeded"):
        result.get(timeout=5)
    child = int(wait_for(lambda: fault_cluster.ledger_list("overrun:starts"), T, "overrun")[-1]
                .split("|")[1])
    wait_for(lambda: not pid_alive(child), 5, "the child to be gone")
    wait_for(lambda: child not in pool_pids(app, worker.hostname), 5, "a new child")
    assert result.id not in fault_cluster.ledger_list("overrun:ends")
    assert f"Hard time limit (1s) exceeded for {overrun.name}[{result.id}]" in worker.log()
    assert_total_queue([neighbour.id], ledger.settle([neighbour.id], quiet=0.2))


def test_soft_time_limit_is_catchable(fault_cluster):
    """A8: SoftTimeLimitExceeded is raised inside the task, which may recover."""
    fault_cluster.start(concurrency=1)
    result = soft_catcher.delay()
    assert result.get(timeout=5) == "caught"
    assert_total_queue([result.id], fault_cluster.ledger_list("soft:caught"))


def test_task_ignoring_soft_limit_is_killed_at_hard_limit(fault_cluster):
    """A8: a task that swallows the soft limit is killed at the hard one."""
    fault_cluster.start(concurrency=1)
    result = soft_ignorer.delay()
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=5)
    assert result.id in fault_cluster.ledger_list("soft:ignored")
    assert result.id not in fault_cluster.ledger_list("soft:ends")
    assert_total_queue([result.id], [result.id] if result.failed() else [])


def test_soft_limit_above_hard_limit_is_rejected_when_declared_or_sent():
    """A8: ``soft > hard`` is refused when a task is declared and when a call gives both,
    or gives a soft limit above the task's declared hard limit."""
    with scratch_app("limits", broker="memory://", backend="memory://") as other:
        with pytest.raises(ConfigurationError, match="soft_time_limit"):
            other.task(soft_time_limit=5, time_limit=1)(lambda: None)

        @other.task(time_limit=1)
        def limited() -> None:
            pass

        with pytest.raises(InvalidWorkflow, match="soft_time_limit"):
            limited.apply_async(soft_time_limit=5, time_limit=1)
        with pytest.raises(InvalidWorkflow, match="soft_time_limit"):
            limited.apply_async(soft_time_limit=3)  # above the declared time_limit=1


# -- A3: the whole worker is SIGKILLed -----------------------------------------------------------


@pytest.mark.parametrize("fault_cluster", CONFIGS, indirect=True)
def test_sigkill_whole_worker_redelivers_prefetched_and_running(fault_cluster):
    """A3: SIGKILL the worker and its pool while 2 late-acked tasks run and 6 more are
    prefetched; a new worker gets every one of them back once the lease lapses (Redis,
    embedded) or at once (RabbitMQ). Nothing is lost, nothing ends twice.

    The kill lands while the prefetch window (2 x 4) is full and the running tasks are
    blocked, so nothing is acked yet. (Kills at any other instant: the soak in
    test_leases.py.)
    """
    env = {"FLOWQ_TEST_LEASE": str(LEASE)}
    first = fault_cluster.start(env=env, concurrency=2)
    k = kind()
    ledger = Ledger(fault_cluster, k)
    results = [step.apply_async((i,), {"kind": k, "fault": Fault.BLOCK}) for i in range(2)]
    wait_for(lambda: len(ledger.starts()) >= 2, T, "two blocked tasks to run")
    results += [step.apply_async((i,), {"kind": k}) for i in range(2, 14)]
    wait_for(lambda: queue_size(fault_cluster) == 14 - 8, T, "the prefetch window to fill")
    WorkerKill.apply(first, WorkerKill.Method.SIGKILL)
    killed_at = time.monotonic()
    assert first.wait(10) is not None
    assert len(ledger.starts()) == 2  # only the blocked ones had started

    fault_cluster.start(env=env, concurrency=2)  # blocked tasks run clean on attempt 2
    assert [r.get(timeout=T) for r in results] == [i + 1 for i in range(14)]
    assert time.monotonic() - killed_at < LEASE + 10
    completed = ledger.settle([r.id for r in results], quiet=1.0)
    assert [s.attempt for s in ledger.starts() if s.task_id == results[0].id] == [1, 2]
    assert_total_queue([r.id for r in results], completed)


# -- A6: crash loop ---------------------------------------------------------------------------------


def test_crash_loop_is_dead_lettered_after_max_deliveries(fault_cluster):
    """A6: a task that kills its process on every delivery fails with WorkerLostError and
    is dead-lettered after ``task_max_deliveries`` (4 here) deliveries, counted durably:
    the count survives the worker being SIGKILLed halfway (2 deliveries on each)."""
    # Each crash takes ~1.5 s to be noticed; the lease is longer, and renewed anyway: the
    # worker holding the delivery lives (only its child dies).
    env = {"FLOWQ_TEST_LEASE": "4", "FLOWQ_TEST_MAX_DELIVERIES": "4"}
    first = fault_cluster.start(env=env, concurrency=1)
    k = kind()
    ledger = Ledger(fault_cluster, k)
    # sleep before exiting: the kill below lands while delivery 2 runs, not between two
    result = step.apply_async((1,), {"fault": Fault.ALWAYS_EXIT, "kind": k, "sleep": 0.6})
    wait_for(lambda: len(ledger.starts()) >= 2, T, "two deliveries")
    WorkerKill.apply(first, WorkerKill.Method.SIGKILL)
    first.wait(10)
    assert redeliveries_counted(fault_cluster, result.id) == 1

    fault_cluster.start(env=env, concurrency=1)
    with pytest.raises(WorkerLostError, match="delivered 5 times"):
        result.get(timeout=T)
    (dead,) = dead_letters(fault_cluster, 1)
    assert dead.headers["id"] == result.id
    assert dead.headers["x-flowq-reason"].startswith("WorkerLostError")
    time.sleep(1.0)
    assert len(ledger.starts()) == 4 and ledger.ends() == []
    assert_total_queue([result.id], [result.id] if result.failed() else [])


# -- A14: an ETA beyond the lease ----------------------------------------------------


@pytest.mark.parametrize("fault_cluster", ["redis", "embedded"], indirect=True)
def test_an_eta_beyond_the_lease_runs_once(fault_cluster):
    """A14: with a lease of 2 s, tasks due in 5 s run once each: they wait in the delay
    index, not held by the worker."""
    worker = fault_cluster.start(env={"FLOWQ_TEST_LEASE": str(LEASE)})
    k = kind()
    ledger = Ledger(fault_cluster, k)
    sent = [step.apply_async((i,), {"kind": k}, countdown=LEASE * 2.5) for i in range(3)]
    assert [r.get(timeout=T) for r in sent] == [1, 2, 3]
    completed = ledger.settle([r.id for r in sent], quiet=LEASE + 1)
    assert_total_queue([r.id for r in sent], completed)
    assert len(ledger.starts()) == 3 and worker.alive()


# -- A9: a new child for every task ---------------------------------------------------------------


@pytest.mark.parametrize("tasks, members", [
    (8, 4),
    pytest.param(300, 50, marks=[pytest.mark.stress, pytest.mark.timeout(300)]),
])
def test_max_tasks_per_child_one_under_load(fault_cluster, tasks, members):
    """A9: with ``--max-tasks-per-child 1`` lone tasks and a chord all finish, none lost,
    none twice. The fast tier sends 8 + 4: billiard replaces exited children only on
    its supervisor's 0.8 s tick, so a pool of 2 runs about 4 such tasks a second."""
    fault_cluster.start("--max-tasks-per-child", "1", concurrency=2)
    k, kb = kind(), kind()
    ledger, bodies = Ledger(fault_cluster, k), Ledger(fault_cluster, kb)
    _, chord_result = send_workflow(chord([step.s(i, kind=k) for i in range(members)],
                                          body.s(kind=kb)))
    results = [step.apply_async((i,), {"kind": k}) for i in range(tasks)]
    assert [r.get(timeout=240) for r in results] == [i + 1 for i in range(tasks)]
    assert chord_result.get(timeout=240) == sum(i + 1 for i in range(members))
    published = [r.id for r in results] + task_ids(chord_result.parent)
    completed = ledger.settle(published, quiet=0.5)
    assert len({s.pid for s in ledger.starts()}) == tasks + members  # a new child each
    assert_total_queue(published, completed)
    assert_total_queue([chord_result.id], bodies.settle([chord_result.id], quiet=0))


# -- A11-A13: shutdown -----------------------------------------------------------------------------


@pytest.mark.parametrize("fault_cluster", CONFIGS, indirect=True)
def test_warm_shutdown_finishes_running_and_returns_prefetched_at_once(fault_cluster):
    """A11 / A13: one SIGTERM. The running late-acked task finishes and is acked; the 3
    prefetched messages go back at once (a second worker runs them while the first is
    still draining, long before any lease could lapse); one SIGTERM does not escalate
    by itself: the worker waits for its running task however long, then exits 0."""
    first = fault_cluster.start(concurrency=1)
    k = kind()
    ledger = Ledger(fault_cluster, k)
    token = uuid.uuid4().hex
    running = step.apply_async((0,), {"kind": k, "fault": Fault.BLOCK, "token": token})
    waiting = [step.apply_async((i,), {"kind": k}) for i in range(1, 4)]
    wait_for(ledger.starts, T, "the long task to start")
    second = fault_cluster.start(concurrency=1)

    WorkerKill.apply(first, WorkerKill.Method.SIGTERM)
    assert [r.get(timeout=T) for r in waiting] == [2, 3, 4]
    assert running.ready() is False  # still blocked: the first worker is draining
    release(fault_cluster, token)
    assert running.get(timeout=T) == 1
    assert first.wait(15) == 0
    assert "Returned 3 unstarted message(s)" in first.log()
    published = [running.id] + [r.id for r in waiting]
    completed = ledger.settle(published, quiet=1.0)
    assert len(ledger.starts()) == 4  # the running one was acked, not redelivered
    assert second.alive()
    assert_total_queue(published, completed)


@pytest.mark.parametrize("method", [WorkerKill.Method.SIGQUIT, WorkerKill.Method.SIGTERM_TWICE],
                         ids=["sigquit", "sigterm-twice"])
def test_cold_shutdown_interrupts_and_returns_the_running_task(fault_cluster, method):
    """A12 / A13: SIGQUIT, or a second SIGTERM during the warm shutdown, is a cold
    shutdown: the running late-acked task is killed, never logged as succeeded, the
    worker exits non-zero, and the message returns for another worker (attempt 2)."""
    first = fault_cluster.start(concurrency=1)
    k = kind()
    ledger = Ledger(fault_cluster, k)
    result = step.apply_async((0,), {"kind": k, "fault": Fault.BLOCK})  # blocks on attempt 1
    wait_for(ledger.starts, T, "the task to start")
    WorkerKill.apply(first, method)
    code = first.wait(4)
    assert code not in (None, 0), f"exit code {code}"
    assert ledger.ends() == []
    assert f"{result.id}] succeeded" not in first.log()

    fault_cluster.start(concurrency=1)
    assert result.get(timeout=T) == 1
    completed = ledger.settle([result.id])
    assert [s.attempt for s in ledger.starts()] == [1, 2]
    assert redeliveries_counted(fault_cluster, result.id) == 1
    assert_total_queue([result.id], completed)
