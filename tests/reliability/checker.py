"""The Jepsen ``total-queue`` checker over the side-effect ledger.

Every operation a test sends is either *published* (the publish returned: confirmed) or
*uncertain* (the publish raised, so it may or may not have gone out). The ledger tells
which task ids *completed* and how often. The checker sorts them into Jepsen's
categories:

* **lost**: published and never completed;
* **duplicated**: completed more often than the test allows;
* **unexpected**: completed but never published, not even uncertainly;
* **recovered**: uncertain, and completed anyway (allowed, reported).

:func:`assert_total_queue` fails with every problem listed; every worker- and
broker-fault test ends with it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

import attrs


class Entry(NamedTuple):
    """One ledger line written by a fault task: ``<id>|<pid>|<attempt>|<time>``."""

    task_id: str
    pid: int
    attempt: int
    at: float

    @classmethod
    def parse(cls, line: str) -> Entry:
        task_id, pid, attempt, at = line.split("|")
        return cls(task_id, int(pid), int(attempt), float(at))


class Ledger:
    """The ``<kind>:starts`` / ``<kind>:ends`` lists fault tasks write, for one cluster."""

    def __init__(self, cluster: Any, kind: str):
        self.cluster = cluster
        self.kind = kind

    def starts(self) -> list[Entry]:
        return [Entry.parse(line) for line in self.cluster.ledger_list(f"{self.kind}:starts")]

    def ends(self) -> list[Entry]:
        return [Entry.parse(line) for line in self.cluster.ledger_list(f"{self.kind}:ends")]

    def completed(self) -> list[str]:
        return [entry.task_id for entry in self.ends()]

    def settle(self, expected: Iterable[str], timeout: float = 30.0,
               quiet: float = 1.0) -> list[str]:
        """Wait until every ``expected`` id ended, then ``quiet`` seconds more (so late
        duplicates show up), and return the completed ids."""
        wanted = set(expected)
        deadline = time.monotonic() + timeout
        while not wanted <= set(self.completed()) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(quiet)
        return self.completed()


@attrs.frozen
class History:
    """The checker's verdict on one test's operations."""

    published: frozenset[str]
    uncertain: frozenset[str]
    completions: Mapping[str, int]

    @property
    def lost(self) -> list[str]:
        return sorted(self.published - set(self.completions))

    @property
    def unexpected(self) -> list[str]:
        return sorted(set(self.completions) - self.published - self.uncertain)

    @property
    def recovered(self) -> list[str]:
        return sorted(self.uncertain & set(self.completions))

    def duplicated(self, allowed: int | Mapping[str, int] = 1) -> dict[str, int]:
        """Ids completed more often than ``allowed`` (one bound, or one per id)."""
        def bound(task_id: str) -> int:
            return allowed if isinstance(allowed, int) else allowed.get(task_id, 1)
        return {task_id: count for task_id, count in sorted(self.completions.items())
                if count > bound(task_id)}


def check_total_queue(published: Iterable[str], completed: Iterable[str],
                      uncertain: Iterable[str] = ()) -> History:
    """Sort a test's operations into the total-queue categories."""
    return History(frozenset(published), frozenset(uncertain), dict(Counter(completed)))


def assert_total_queue(published: Iterable[str], completed: Iterable[str], *,
                       uncertain: Iterable[str] = (),
                       max_completions: int | Mapping[str, int] = 1) -> History:
    """Fail unless lost = 0, unexpected = 0 and no id completed more than allowed.

    ``max_completions`` is the duplicate bound: 1 (exactly once) by default, or a bound
    per task id (ids not listed: 1). Returns the history, ``recovered`` included.
    """
    history = check_total_queue(published, completed, uncertain)
    problems = []
    if history.lost:
        problems.append(f"lost {len(history.lost)}: {history.lost[:10]}")
    if history.unexpected:
        problems.append(f"unexpected {len(history.unexpected)}: {history.unexpected[:10]}")
    duplicated = history.duplicated(max_completions)
    if duplicated:
        sample = dict(list(duplicated.items())[:10])
        problems.append(f"duplicated beyond the bound {len(duplicated)}: {sample}")
    if problems:
        raise AssertionError(
            f"total-queue check failed over {len(history.published)} published, "
            f"{len(history.uncertain)} uncertain, {sum(history.completions.values())} "
            f"completions: " + "; ".join(problems))
    return history
