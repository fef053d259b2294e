"""Beat against real servers: ``flowq beat`` and worker subprocesses, runs counted in a ledger.

Every beat process gets its own ``beat_schedule`` (``FLOWQ_TEST_BEAT``) whose task
records the beat's name, so the ledger says not only how many runs there were but
which beat sent each one. Bounds are generous: the tests check counts and who sent,
never tight timings.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from flowq.runtime.beat import lease_key
from tests.integration.app import app
from tests.integration.harness import ROOT, Cluster, WorkerProcess

pytestmark = pytest.mark.timeout(120)

TASK = "tests.integration.app.remember"
#: Seconds anything that should happen "soon" may take before a test gives up.
PATIENCE = 30.0


class BeatProcess(WorkerProcess):
    """``flowq beat`` in a subprocess with its own process group.

    Only the command differs from a worker's: signalling, logs and cleanup are the
    worker's, and the cluster stops it (by process group) after the test.
    """

    def __init__(self, cluster: Cluster, schedule: dict[str, Any], lease_ttl: float):
        self.cluster = cluster
        self.log_path = cluster.tmp / f"beat-{uuid.uuid4().hex[:6]}.log"
        command = [sys.executable, "-m", "flowq", "-A", "tests.integration.app:app", "beat",
                   "-l", "info", "--lease-ttl", str(lease_ttl)]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, cwd=ROOT,
                                     env={**cluster.env, "FLOWQ_TEST_BEAT": json.dumps(schedule)},
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        cluster.workers.append(self)


def every(seconds: float, sender: str, kind: str) -> dict[str, Any]:
    """A beat_schedule with one entry that records ``sender`` in ledger list ``kind``."""
    return {"tick": {"task": TASK, "schedule": seconds, "args": [sender, kind]}}


def start_beat(cluster: Cluster, schedule: dict[str, Any], lease_ttl: float = 3.0,
               wait_for: str = "Scheduler: active") -> BeatProcess:
    beat = BeatProcess(cluster, schedule, lease_ttl)
    wait_for_log(beat, wait_for)
    return beat


def wait_for_log(process: WorkerProcess, text: str, timeout: float = PATIENCE) -> None:
    wait_until(lambda: text in process.log(), timeout,
               lambda: f"{text!r} not logged; log:\n{process.log()}",
               alive=process.alive)


def wait_until(condition: Callable[[], bool], timeout: float = PATIENCE,
               explain: Callable[[], str] = lambda: "condition not met",
               alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if not alive():
            raise AssertionError(f"process exited early: {explain()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s: {explain()}")
        time.sleep(0.02)


def settled(cluster: Cluster, kind: str, pause: float = 1.5) -> list[str]:
    """The ledger list after a pause long enough for sent runs to finish."""
    time.sleep(pause)
    return cluster.ledger_list(kind)


def new_kind() -> str:
    return f"beat-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("fresh_cluster", ["redis", "embedded"], indirect=True)
def test_one_second_schedule_runs_two_to_four_times_in_three_and_a_half_seconds(fresh_cluster):
    kind = new_kind()
    fresh_cluster.start_worker()
    beat = start_beat(fresh_cluster, every(1.0, "A", kind))
    time.sleep(3.5)
    assert beat.stop() == 0
    assert 2 <= len(settled(fresh_cluster, kind)) <= 4


def test_restart_neither_repeats_nor_skips_a_run(fresh_cluster):
    kind = new_kind()
    fresh_cluster.start_worker()
    first = start_beat(fresh_cluster, every(6.0, "A", kind))
    wait_until(lambda: fresh_cluster.ledger_list(kind) == ["A"])
    assert first.stop() == 0
    # When: a new beat starts within the interval.
    second = start_beat(fresh_cluster, every(6.0, "B", kind))
    # Then: it knows the run "A" sent (no repeat) and sends the next one when due.
    assert settled(fresh_cluster, kind, pause=1.0) == ["A"]
    wait_until(lambda: len(fresh_cluster.ledger_list(kind)) >= 2)
    assert second.stop() == 0
    assert settled(fresh_cluster, kind) == ["A", "B"]


def test_runs_missed_while_beat_was_down_run_once(fresh_cluster):
    kind = new_kind()
    fresh_cluster.start_worker()
    first = start_beat(fresh_cluster, every(3.0, "A", kind))
    wait_until(lambda: fresh_cluster.ledger_list(kind) == ["A"])
    assert first.stop() == 0
    time.sleep(7)  # two runs of the 3-second schedule missed
    second = start_beat(fresh_cluster, every(3.0, "B", kind))
    time.sleep(1)  # the next run is due 3 s after the catch-up run
    assert second.stop() == 0
    assert settled(fresh_cluster, kind) == ["A", "B"]


def test_two_beats_one_schedules_and_the_standby_takes_over(fresh_cluster):
    kind, ttl = new_kind(), 3.0
    fresh_cluster.start_worker()
    active = start_beat(fresh_cluster, every(1.0, "A", kind), lease_ttl=ttl)
    standby = start_beat(fresh_cluster, every(1.0, "B", kind), lease_ttl=ttl,
                         wait_for="Scheduler: standby")
    time.sleep(3)
    before = settled(fresh_cluster, kind, pause=0.5)
    assert len(before) >= 2 and set(before) == {"A"}
    assert "sending due task" not in standby.log()
    # When: the active beat dies without releasing its lease.
    active.kill_group()
    killed_at = time.monotonic()
    wait_for_log(standby, "Scheduler: active", timeout=ttl + PATIENCE)
    assert time.monotonic() - killed_at <= ttl + 5  # lease TTL plus a margin
    wait_until(lambda: "B" in fresh_cluster.ledger_list(kind))
    runs = fresh_cluster.ledger_list(kind)
    senders = runs.count("A")
    assert runs == ["A"] * senders + ["B"] * (len(runs) - senders)


def test_sigterm_stops_beat_with_exit_0_and_releases_the_lease(fresh_cluster):
    beat = start_beat(fresh_cluster, every(60.0, "A", new_kind()), lease_ttl=60)
    assert beat.stop(signal.SIGTERM) == 0
    assert "Scheduler: stopped" in beat.log()
    assert app.backend.acquire_lease(lease_key(app), "next-beat", 1)  # free long before 60 s


@pytest.mark.parametrize("fresh_cluster", ["embedded"], indirect=True)
def test_worker_with_embedded_beat(fresh_cluster):
    kind = new_kind()
    worker = fresh_cluster.start_worker("-B", env={"FLOWQ_TEST_BEAT": json.dumps(
        every(0.5, "W", kind))})
    wait_until(lambda: len(fresh_cluster.ledger_list(kind)) >= 2,
               explain=lambda: f"no runs; worker log:\n{worker.log()}")
    assert worker.stop(signal.SIGTERM) == 0
    assert "Scheduler: stopped" in worker.log()
    assert app.backend.acquire_lease(lease_key(app), "next-beat", 1)


@pytest.mark.parametrize("command", [["beat"], ["worker", "-B"]])
def test_a_bad_schedule_fails_at_start_with_one_line_naming_the_entry(fresh_cluster, command):
    schedule = {**every(5, "A", "unused"),
                "broken": {**every(5, "B", "unused")["tick"], "schedule": "every minute"}}
    env = {**fresh_cluster.env, "FLOWQ_TEST_BEAT": json.dumps(schedule)}
    done = subprocess.run([sys.executable, "-m", "flowq", "-A", "tests.integration.app:app",
                           *command], check=False, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    lines = (done.stdout + done.stderr).strip().splitlines()
    assert len(lines) == 1 and "beat_schedule entry 'broken': a schedule must be" in lines[0]
