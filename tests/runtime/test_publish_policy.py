"""Per-call publish retries (Celery's ``retry`` and ``retry_policy``) on an unreachable broker.

Nothing listens on the broker's port, so every attempt fails at once; the waits between
attempts are recorded instead of slept.
"""

from __future__ import annotations

import pytest

from flowq import Flowq
from flowq.exceptions import BrokerUnavailable
from flowq.runtime import publisher


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    recorded: list[float] = []
    monkeypatch.setattr(publisher.time, "sleep", recorded.append)
    return recorded


@pytest.fixture
def app() -> Flowq:
    app = Flowq("publish-policy", broker="redis://127.0.0.1:1/0",
                backend="memory://publish-policy", broker_connection_max_retries=3)

    @app.task(name="policy.noop")
    def noop():
        return None

    return app


def test_the_settings_retry_broker_connection_max_retries_times(app, waits):
    with pytest.raises(BrokerUnavailable, match="127.0.0.1:1"):
        app.send_task("policy.noop")
    assert len(waits) == 3


def test_retry_false_gives_up_after_the_first_attempt(app, waits):
    with pytest.raises(BrokerUnavailable):
        app.send_task("policy.noop", retry=False)
    assert waits == []


def test_a_retry_policy_sets_the_attempts_and_the_waits(app, waits):
    policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.7}
    with pytest.raises(BrokerUnavailable):
        app.send_task("policy.noop", retry_policy=policy)
    assert waits == [0, 0.5]
