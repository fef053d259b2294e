"""The kill soak (:mod:`tests.reliability.soak`): a short one on Redis in the fast tier;
150 kills over thousands of tasks on Redis and on the embedded broker in the stress tier
(``pytest -m stress tests/reliability/test_soak.py -s`` prints the figures)."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import LEASE
from tests.reliability.soak import Soak, report

ENV = {"FLOWQ_TEST_LEASE": str(LEASE)}


@pytest.mark.timeout(120)
def test_a_few_whole_worker_kills_lose_nothing(fault_cluster):  # Redis
    figures = Soak(fault_cluster, ENV, kills=5, rate=6, initial=8).run()
    print(report(figures))
    assert figures.kills == 5 and figures.workflows == 38


@pytest.mark.stress
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("fault_cluster", ["redis", "embedded"], indirect=True)
def test_150_whole_worker_kills_over_thousands_of_tasks_lose_nothing(fault_cluster):
    figures = Soak(fault_cluster, ENV, kills=150, rate=6, initial=40, step_seconds=0.05).run()
    print(report(figures))
    assert figures.steps >= 3000
