"""The kill soak: whole workers SIGKILLed again and again under late-acked workflows.

Two workers (two children each) run chains, groups and chords of late-acked steps that
take a tenth of a second or so, while a bounded loop SIGKILLs a whole worker (its process
group) every 0.5-1.5 s at random and starts a replacement, so kills land at every
moment: mid-task, mid-fetch, mid-ack, mid-chord-completion, during start-up. Workflows
keep being sent during the loop. When the loop has made its kills, two workers are left
to finish, and the ledger decides:

* lost = 0: every step of every workflow completed at least once;
* no workflow stuck: every workflow's result is there, with the right value;
* every chord body completed exactly once, counting only the processes that were never
  killed (a body whose worker died between its last ledger write and storing its result
  runs again, as any late-acked task must; two runs outside killed processes would mean
  the chord fired twice).
"""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import attrs

from flowq import chain, chord, group
from tests.reliability.checker import Ledger, assert_total_queue
from tests.reliability.conftest import FaultCluster, task_ids
from tests.reliability.fault_tasks import body, step

__all__ = ["Figures", "Soak", "descendants", "report"]


@attrs.frozen
class Figures:
    """What one soak did and found."""

    kills: int
    workflows: int
    steps: int
    #: steps started more than once (their first run was killed, or its ack was)
    restarted: int
    #: completions beyond one (killed between finishing and being acknowledged)
    duplicates: int
    bodies: int
    body_runs: int
    seconds: float


def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (Linux /proc), read just before a kill."""
    found = {pid}
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            todo += [child for child in children if child not in found]
            found.update(children)
    return found


class Soak:
    """One soak over ``cluster``: ``kills`` whole-worker SIGKILLs, ``rate`` workflows sent
    per kill interval (plus ``initial`` before the first)."""

    def __init__(self, cluster: FaultCluster, env: dict[str, str], kills: int,
                 rate: int = 3, initial: int = 10, step_seconds: float = 0.1,
                 seed: int | None = None):
        self.cluster = cluster
        self.env = env
        self.kills = kills
        self.rate = rate
        self.initial = initial
        self.step_seconds = step_seconds
        self.random = random.Random(seed)
        self.kind = f"soak-{uuid.uuid4().hex[:8]}"
        self.steps = Ledger(cluster, self.kind)
        self.bodies = Ledger(cluster, self.kind + "-body")
        self.sent: list[tuple[Any, int]] = []  # (result handle, expected value)
        self.chords: list[Any] = []
        self.killed: set[int] = set()

    def _send_one(self) -> None:
        """A chain of 3, a group of 4 or a chord of 4 with a body, at random."""
        s = self.random.choice(["chain", "group", "chord"])
        opts = {"kind": self.kind, "sleep": self.step_seconds}
        if s == "chain":
            result = chain(step.s(1, **opts), step.s(**opts), step.s(**opts)).delay()
            self.sent.append((result, 4))
        elif s == "group":
            result = group(step.s(i, **opts) for i in range(4)).delay()
            self.sent.append((result, [1, 2, 3, 4]))
        else:
            result = chord([step.s(i, **opts) for i in range(4)],
                           body.s(kind=self.kind + "-body")).delay()
            self.sent.append((result, 10))
            self.chords.append(result)

    def run(self) -> Figures:
        started = time.monotonic()
        workers = [self.cluster.start(env=self.env, concurrency=2) for _ in range(2)]
        for _ in range(self.initial):
            self._send_one()
        for _ in range(self.kills):
            time.sleep(self.random.uniform(0.5, 1.5))
            for _ in range(self.rate):
                self._send_one()
            victim = workers.pop(0)  # the one up longest: it has work in hand
            self.killed |= descendants(victim.pid)
            victim.kill_group()
            workers.append(self.cluster.start(env=self.env, concurrency=2, wait=False))
        return self._settle(started)

    def _settle(self, started: float) -> Figures:
        """Wait for every workflow (the two last workers finish them) and judge."""
        for result, expected in self.sent:
            value = result.get(timeout=120)
            assert value == expected, (result.id, value, expected)
        steps = sorted({task_id for result, _ in self.sent for task_id in task_ids(result)
                        if task_id not in {c.id for c in self.chords}})
        completed = self.steps.settle(steps, quiet=2.0)
        # duplicates are allowed for steps (late ack under SIGKILL): lost = 0 is the check
        assert_total_queue(steps, completed, max_completions=len(completed))
        body_ids = [c.id for c in self.chords]
        ends = self.bodies.settle(body_ids, quiet=0.0)
        unkilled = Counter(entry.task_id for entry in self.bodies.ends()
                           if entry.pid not in self.killed)
        assert_total_queue(body_ids, ends, max_completions=len(ends))
        fired_twice = {task_id: n for task_id, n in unkilled.items() if n > 1}
        assert not fired_twice, f"chord bodies completed twice by live processes: {fired_twice}"
        starts = Counter(entry.task_id for entry in self.steps.starts())
        return Figures(kills=self.kills, workflows=len(self.sent), steps=len(steps),
                       restarted=sum(1 for n in starts.values() if n > 1),
                       duplicates=len(completed) - len(steps), bodies=len(body_ids),
                       body_runs=len(ends), seconds=round(time.monotonic() - started, 1))


def report(figures: Figures) -> str:
    """One line for the test log (the figures docs/reliability.md quotes)."""
    return (f"soak: {figures.kills} SIGKILLs, {figures.workflows} workflows, {figures.steps} "
            f"steps ({figures.restarted} started again, {figures.duplicates} duplicate "
            f"completions), {figures.bodies} chord bodies ({figures.body_runs} runs), 0 lost, "
            f"{figures.seconds}s")
