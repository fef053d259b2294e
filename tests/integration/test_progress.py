"""Progress: ``update_state`` with custom states, ``get(progress=True)`` drawing a bar on
a terminal only (checked through a pseudo-terminal), and ``flowq graph --watch``. Tasks
wait on gates the test opens, so every intermediate state is seen for sure."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
import uuid

import pytest

from flowq import AsyncResult, states
from flowq.exceptions import InvalidState
from tests.integration import observe_tasks
from tests.integration.app import app
from tests.integration.harness import ROOT, Cluster, wait_for

pytestmark = pytest.mark.timeout(120)

CLIENT = """
import sys
from flowq import chord, group
from tests.integration import app as tasks, observe_tasks as gates
gate = sys.argv[2]
if sys.argv[1] == "chord":
    result = chord([gates.gated.s(i, token=f"{gate}:{i}") for i in range(3)], tasks.tsum.s()).delay()
    print(result.root_id, flush=True)
    print(result.get(timeout=60, progress=True, interval=0.05), flush=True)
else:
    result = group(gates.gated.s(0, token=f"{gate}:0"), tasks.fail.si(), gates.gated.s(2, token=f"{gate}:2")).delay()
    print(result.root_id, flush=True)
    print(len(result.get(timeout=60, propagate=False, progress=True, interval=0.05)), flush=True)
"""


def test_update_state_records_custom_states_until_the_task_ends(db14: Cluster) -> None:
    gate = f"g{uuid.uuid4().hex[:6]}"
    result = observe_tasks.stepwise.delay(3, token=gate)
    for current in range(3):
        wait_for(lambda step=current: result.state == "PROGRESS"
                 and result.info["current"] == step, what=f"PROGRESS at step {current}")
        assert result.info == {"current": current, "total": 3}
        assert not result.ready()
        db14.open_gate(f"{gate}:{current}")
    assert result.get(timeout=30) == 3
    # A state written after the task finished is ignored: the outcome is write-once
    observe_tasks.stepwise.update_state(task_id=result.id, state="PROGRESS", meta={"late": 1})
    assert AsyncResult(result.id, app=app).state == states.SUCCESS
    assert AsyncResult(result.id, app=app).result == 3


def test_update_state_with_task_id_and_its_refusals(db14: Cluster) -> None:
    other = f"elsewhere-{uuid.uuid4().hex}"
    observe_tasks.stepwise.update_state(task_id=other, state="UPLOADING", meta={"bytes": 10})
    handle = AsyncResult(other, app=app)
    assert (handle.state, handle.info, handle.ready()) == ("UPLOADING", {"bytes": 10}, False)
    with pytest.raises(InvalidState, match="cannot record SUCCESS"):
        observe_tasks.stepwise.update_state(task_id=other, state=states.SUCCESS)
    with pytest.raises(InvalidState, match="needs a state name"):
        observe_tasks.stepwise.update_state(task_id=other)
    with pytest.raises(InvalidState, match="outside a running task needs task_id="):
        observe_tasks.stepwise.update_state(state="PROGRESS")
    assert AsyncResult(other, app=app).state == "UPLOADING"


class Terminal:
    """A client process whose standard error is a pseudo-terminal; stdout is a pipe."""

    def __init__(self, cluster: Cluster, mode: str, gate: str, tty: bool = True):
        master, slave = os.openpty() if tty else (None, None)
        self.master = master
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CLIENT, mode, gate], cwd=ROOT, env=cluster.env,
            stdout=subprocess.PIPE, stderr=slave if tty else subprocess.PIPE, text=True)
        if slave is not None:
            os.close(slave)
        self.screen = ""
        self.root_id = self.proc.stdout.readline().strip()  # type: ignore[union-attr]

    def read_until(self, text: str, timeout: float = 30.0) -> str:
        assert self.master is not None
        deadline = time.monotonic() + timeout
        while text not in self.screen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} never shown; the terminal shows {self.screen!r}"
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.screen += os.read(self.master, 4096).decode()
                except OSError:  # the client closed the terminal
                    pass
        return self.screen

    def finish(self) -> tuple[str, str]:
        out, err = self.proc.communicate(timeout=60)
        if self.master is not None:
            try:
                while chunk := os.read(self.master, 4096):
                    self.screen += chunk.decode()
            except OSError:
                pass
            os.close(self.master)
        return out, err or ""


def test_get_with_progress_draws_a_bar_on_a_terminal(db14: Cluster) -> None:
    gate = f"g{uuid.uuid4().hex[:6]}"
    client = Terminal(db14, "chord", gate)
    client.read_until("] 0/4 done")  # three members and the body
    db14.open_gate(f"{gate}:0")
    client.read_until("] 1/4 done")
    db14.open_gate(f"{gate}:1")
    db14.open_gate(f"{gate}:2")
    out, _ = client.finish()
    assert out.strip() == "3"
    assert "\r[" + "#" * 30 + "] 4/4 done" in client.screen
    assert client.screen.endswith("\n")


def test_group_progress_counts_failures(db14: Cluster) -> None:
    gate = f"g{uuid.uuid4().hex[:6]}"
    client = Terminal(db14, "group", gate)
    client.read_until("1/3 done, 1 failed")
    db14.open_gate(f"{gate}:0")
    db14.open_gate(f"{gate}:2")
    out, _ = client.finish()
    assert out.strip() == "3"
    assert "3/3 done, 1 failed" in client.screen


def test_no_bar_when_standard_error_is_not_a_terminal(db14: Cluster) -> None:
    gate = f"g{uuid.uuid4().hex[:6]}"
    for i in range(3):
        db14.open_gate(f"{gate}:{i}")
    client = Terminal(db14, "chord", gate, tty=False)
    out, err = client.finish()
    assert client.proc.returncode == 0, err
    assert out.strip() == "3" and err == ""


def watch(cluster: Cluster, task_id: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flowq", "-A", "tests.integration.app:app", "graph", task_id,
         "--watch", "--interval", "0.1", "-t", "0", *args],
        cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_graph_watch_redraws_until_the_workflow_ends(db14: Cluster) -> None:
    gate = f"g{uuid.uuid4().hex[:6]}"
    result = (observe_tasks.gated.s(1, token=f"{gate}:a")
              | observe_tasks.gated.s(token=f"{gate}:b")).delay()
    watcher = watch(db14, result.id)
    frames = [""]
    assert watcher.stdout is not None
    while "[PENDING]" not in frames[-1] or frames[-1].count("\n") < 3:
        line = watcher.stdout.readline()
        assert line, f"the watcher ended early: {watcher.communicate()}"
        frames[-1] += line  # the first drawing: both steps pending
    db14.open_gate(f"{gate}:a")
    db14.open_gate(f"{gate}:b")
    out, err = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, err
    drawings = (frames[0] + out).split("\n\n")
    assert drawings[0].count("[PENDING]") == 2
    assert drawings[-1].count("[SUCCESS]") == 2 and "-> 1" in drawings[-1]
    assert len(drawings) >= 2 and len(set(drawings)) == len(drawings)  # drawn when changed
    assert result.get(timeout=5) == 1


def test_graph_watch_gives_up_after_max_wait(db14: Cluster) -> None:
    gate = f"g{uuid.uuid4().hex[:6]}"
    result = observe_tasks.gated.s(1, token=gate).set(link=observe_tasks.gated.s(token=gate))
    sent = result.delay()
    watcher = watch(db14, sent.id, "--max-wait", "1")
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 1
    assert err.strip() == (f"Error: workflow {sent.root_id} is still running after 1s "
                           f"(--max-wait)")
    assert "[PENDING]" in out
    db14.open_gate(gate)
    assert sent.get(timeout=30) == 1
