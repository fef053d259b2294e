"""Resume against a real worker (Redis database 14): a chord of 1,000 whose 3 failed
parts run again, with the body, which then sees all 1,000 results; refusals; the CLI.
Executions are counted in a ledger written by the tasks themselves."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections import Counter

import pytest

from flowq import chord, group
from flowq.exceptions import ChordError, ResumeRefused
from tests.integration import observe_tasks
from tests.integration.app import app
from tests.integration.harness import ROOT, Cluster, wait_for

pytestmark = pytest.mark.timeout(240)


def flowq(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowq", "-A", "tests.integration.app:app",
                           *args], cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                          timeout=60, check=False)


def fail_with(cluster: Cluster, kind: str, *values: object) -> None:
    cluster.ledger.sadd(f"{cluster.ledger_prefix}{kind}:fail", *map(str, values))


def stop_failing(cluster: Cluster, kind: str) -> None:
    cluster.ledger.delete(f"{cluster.ledger_prefix}{kind}:fail")


def finished(result: object) -> None:
    flow = result.workflow()  # type: ignore[attr-defined]
    wait_for(flow.ready, timeout=180, what=f"{flow} to finish", interval=0.2)


def test_a_chord_of_1000_with_3_failed_parts_reruns_those_3_and_the_body(db14: Cluster
                                                                          ) -> None:
    # Given a chord of 1,000 whose parts 7, 500 and 999 fail, finished
    kind = f"part-{uuid.uuid4().hex[:6]}"
    failing = {7, 500, 999}
    fail_with(db14, kind, *failing)
    result = chord([observe_tasks.flaky.s(i, kind=kind) for i in range(1000)],
                   observe_tasks.count_body.s(kind=f"{kind}-body")).delay()
    with pytest.raises(ChordError):
        result.get(timeout=180)
    finished(result)
    assert Counter(map(int, db14.ledger_list(kind))) == dict.fromkeys(range(1000), 1)
    assert db14.ledger_list(f"{kind}-body") == []
    # When the cause is fixed and the workflow resumed, twice in a row
    stop_failing(db14, kind)
    resumed = result.workflow().resume()
    with pytest.raises(ResumeRefused, match="still running|finished successfully"):
        result.workflow().resume()
    # Then the body sees all 1,000 results, in order, and ran once
    assert resumed.get(timeout=120) == [1000, sum(range(1000))]
    assert result.get(timeout=5) == [1000, sum(range(1000))]
    runs = Counter(map(int, db14.ledger_list(kind)))
    assert runs == {i: 2 if i in failing else 1 for i in range(1000)}
    assert len(db14.ledger_list(f"{kind}-body")) == 1
    # and the tracked progress counts every node once, none failed
    tracked = app.backend.tracked_workflows([result.root_id])[0].progress
    assert {state: n for state, n in tracked.counts.items() if n} == {"SUCCESS": 1002}
    with pytest.raises(ResumeRefused, match="finished successfully: nothing to resume"):
        result.workflow().resume()
    assert len(db14.ledger_list(kind)) == 1003  # nothing ran after the body


def test_a_running_workflow_is_refused_then_flowq_resume_resumes_it(db14: Cluster) -> None:
    kind = f"cli-{uuid.uuid4().hex[:6]}"
    gate = f"gate-{kind}"
    fail_with(db14, kind, 0)
    result = (group(observe_tasks.flaky.s(0, kind=kind), observe_tasks.gated.s(1, token=gate))
              | observe_tasks.count_body.s(kind=f"{kind}-body")).delay()
    with pytest.raises(ChordError):
        result.get(timeout=60)
    # While the gated member still runs, resuming is refused
    with pytest.raises(ResumeRefused, match=f"workflow {result.root_id} is still running: 1 "
                                            f"of its nodes have not finished"):
        result.workflow().resume()
    db14.open_gate(gate)
    finished(result)
    stop_failing(db14, kind)
    done = flowq(db14, "resume", result.parent.results[0].id)  # any task's id will do
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (f"resumed workflow {result.root_id} (resume #1): 2 task(s) "
                                   f"to run again, 1 result(s) kept, 1 sent now")
    assert result.get(timeout=60) == [2, 1]
    assert db14.ledger_list(kind) == ["0", "0"]
    # and once it succeeded, the command refuses in one line
    again = flowq(db14, "resume", result.root_id)
    assert again.returncode == 1
    assert again.stderr == (f"Error: ResumeRefused: workflow {result.root_id} finished "
                            f"successfully: nothing to resume\n")
