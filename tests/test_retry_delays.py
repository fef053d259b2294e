"""How long automatic retries wait: exponential backoff, its cap, jitter, the default."""

from __future__ import annotations

import pytest

from flowq import Flowq

app = Flowq("retry-delays", broker="memory://", backend="memory://retry-delays")


def make(**options):
    @app.task(name=f"retry_delays.t{len(app.tasks)}", **options)
    def task():
        return None

    return task


def test_backoff_doubles_and_stops_at_its_cap():
    task = make(retry_backoff=True, retry_backoff_max=5, retry_jitter=False)
    assert [task.backoff_delay(n) for n in range(6)] == [1, 2, 4, 5, 5, 5]


def test_a_numeric_backoff_is_the_first_delay():
    task = make(retry_backoff=3, retry_backoff_max=600, retry_jitter=False)
    assert [task.backoff_delay(n) for n in range(4)] == [3, 6, 12, 24]


def test_jitter_picks_a_delay_up_to_the_backoff():
    task = make(retry_backoff=True, retry_backoff_max=8, retry_jitter=True)
    delays = [task.backoff_delay(3) for _ in range(200)]
    assert all(0 <= d <= 8 for d in delays)
    assert len(set(delays)) > 100  # random, not a fixed value


def test_without_backoff_the_default_retry_delay_is_used():
    assert make(default_retry_delay=7).backoff_delay(4) == 7
    assert make().backoff_delay(0) == 180  # Celery's default of 3 minutes


@pytest.mark.parametrize("retries", [0, 10, 60])
def test_the_cap_holds_for_any_number_of_retries(retries):
    task = make(retry_backoff=True, retry_backoff_max=600, retry_jitter=False)
    assert task.backoff_delay(retries) <= 600
