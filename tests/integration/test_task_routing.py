"""Where and in which order tasks run: queues and routes, priorities, rate limits.

The module's worker has one process, a prefetch of one and consumes three queues
(``-Q <queue>,<queue>.a,<queue>.b``), so a blocker makes every later message wait in
the broker, where priorities decide the order.
"""

from __future__ import annotations

import time

import pytest
from kombu import Exchange

from flowq import states
from flowq.runtime import broker
from tests.integration.app import app
from tests.integration.semantics_support import (
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    running,
    settle,
)
from tests.integration.semantics_tasks import (
    labelled,
    long_sleep,
    queue_probe,
    rate_limited,
    route_by_glob,
    routed,
    stamp,
    unlimited,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["redis", "amqp", "embedded"])
def cluster(request, tmp_path_factory):
    yield from running(request.param, tmp_path_factory, "-Q", "{queue},{queue}.a,{queue}.b",
                       concurrency=1, env={"FLOWQ_TEST_PREFETCH": "1"},
                       queues=("a", "b", "nobody"))


def times(cluster, name: str) -> list[float]:
    return sorted(float(value) for value in cluster.ledger_list(name))


# -- queues and routes -------------------------------------------------------------------------


def test_worker_consumes_every_queue_given_with_Q(cluster):
    queues = [cluster.queue, f"{cluster.queue}.a", f"{cluster.queue}.b"]
    assert [q["name"] for q in cluster.ask("active_queues")] == queues
    for queue in queues:
        assert queue_probe.apply_async(queue=queue).get(timeout=T) == queue


def test_queue_option_of_the_task_and_of_the_call(cluster, monkeypatch):
    assert routed.queue == "flowq-semantics-declared"  # what @app.task(queue=...) declared
    # routing happens at publish, from the task's option: point it at a consumed queue
    monkeypatch.setattr(routed, "queue", f"{cluster.queue}.a")
    assert routed.delay(kind()).get(timeout=T) == f"{cluster.queue}.a"
    # the call's queue wins over the task's
    assert routed.apply_async((kind(),), queue=f"{cluster.queue}.b").get(timeout=T) == (
        f"{cluster.queue}.b")


def test_routing_key_names_the_queue_on_the_default_exchange(cluster):
    target = f"{cluster.queue}.a"
    assert queue_probe.apply_async(routing_key=target).get(timeout=T) == target


def test_a_callers_exchange_routes_by_its_own_bindings(cluster):
    # Given an exchange of the caller's that binds routing key "urgent" to queue .b
    exchange = f"{cluster.queue}.x"
    with broker.connect(app.conf) as connection:
        channel = connection.channel()
        Exchange(exchange, "direct", durable=False, auto_delete=True)(channel).declare()
        channel.queue_bind(queue=f"{cluster.queue}.b", exchange=exchange, routing_key="urgent")
        # When a task is published to it with that key, it runs from queue .b
        sent = queue_probe.apply_async(exchange=exchange, routing_key="urgent")
        assert sent.get(timeout=T) == "urgent"  # the key it arrived with
        channel.exchange_delete(exchange)


def test_task_routes_globs(cluster):
    target = f"{cluster.queue}.b"
    app.close()  # routes are read when the app (re)connects
    app.conf.task_routes = {"*.semantics_tasks.route_*": {"queue": target},
                            "*.never_matches": "elsewhere"}
    try:
        assert route_by_glob.delay(kind()).get(timeout=T) == target
        assert queue_probe.delay().get(timeout=T) == cluster.queue  # no route: default
        assert route_by_glob.apply_async((kind(),), queue=cluster.queue).get(timeout=T) == (
            cluster.queue)  # the call's queue wins over routes
    finally:
        app.close()
        app.conf.task_routes = None


def test_callable_task_routes_see_the_call(cluster):
    """A router function gets Celery's (name, args, kwargs, options) for every call."""
    seen = []

    def by_argument(name, args, kwargs, options):
        seen.append((name, args, kwargs))
        return f"{cluster.queue}.{kwargs['lane']}" if "lane" in kwargs else None

    app.close()
    app.conf.task_routes = [by_argument]
    try:
        assert route_by_glob.delay(kind(), lane="a").get(timeout=T) == f"{cluster.queue}.a"
        assert route_by_glob.delay(kind(), lane="b").get(timeout=T) == f"{cluster.queue}.b"
        assert route_by_glob.delay(kind()).get(timeout=T) == cluster.queue
        assert [kwargs.get("lane") for _, _, kwargs in seen] == ["a", "b", None]
    finally:
        app.close()
        app.conf.task_routes = None


def test_task_for_a_queue_no_worker_consumes_stays_pending(cluster):
    runs, nobody = kind(), f"{cluster.queue}.nobody"
    result = stamp.apply_async((runs,), queue=nobody)
    sent = app.send_task(stamp.name, args=[runs], queue=nobody, countdown=0.2)
    time.sleep(1.5)  # the delayed one is moved to its queue meanwhile
    assert result.state == states.PENDING and sent.state == states.PENDING
    assert app.control.purge([nobody]) == 2
    assert app.control.purge([nobody]) == 0
    assert cluster.ledger_list(runs) == []


# -- priorities and rate limits -------------------------------------------------------------------


def test_high_priority_tasks_run_before_low_priority_ones(cluster):
    busy, order = kind(), kind()
    blocker = long_sleep.delay(busy, 1.5)
    settle(cluster, busy, 1, wait=0)  # the only process is busy from here on
    sent = [labelled.apply_async(("low", order), priority=0) for _ in range(5)]
    sent += [labelled.apply_async(("mid", order), priority=5) for _ in range(2)]
    sent += [labelled.apply_async(("high", order), priority=9) for _ in range(5)]
    blocker.get(timeout=T)
    for result in sent:
        result.get(timeout=T)
    ran = cluster.ledger_list(order)
    # The worker may already hold one message (a low or a mid one) when the others
    # arrive; in arrival order all five lows and both mids would run before the highs.
    last_high = max(i for i, label in enumerate(ran) if label == "high")
    assert len(ran[:last_high]) - ran[:last_high].count("high") <= 2, ran
    assert ran[-3:] == ["low"] * 3, ran  # and the mids before the remaining lows


def test_rate_limit_spaces_a_task_out_without_blocking_others(cluster, request):
    limited_runs, free_runs = kind(), kind()
    limited = [rate_limited.delay(limited_runs) for _ in range(6)]
    free = unlimited.delay(free_runs)  # sent after them
    assert free.get(timeout=T) == "unlimited"
    for result in limited:
        result.get(timeout=T)
    starts = times(cluster, limited_runs)
    assert starts[-1] - starts[0] >= 2.0  # 2/s: six starts span 2.5 s
    assert times(cluster, free_runs)[0] < starts[2]  # it did not queue behind them
    assert cluster.ask("stats")["rate_limits"][rate_limited.name] == 2.0


def test_rate_limit_changed_at_run_time(cluster):
    runs = kind()
    reply = app.control.rate_limit(unlimited.name, "2/s", destination=[cluster.hostname],
                                   reply=True)
    assert reply == [{cluster.hostname: {"ok": f"rate limit of {unlimited.name} set to 2/s"}}]
    try:
        for result in [unlimited.delay(runs) for _ in range(5)]:
            result.get(timeout=T)
        starts = times(cluster, runs)
        assert starts[-1] - starts[0] >= 1.5  # five starts at 2/s span 2 s
    finally:
        app.control.rate_limit(unlimited.name, None, destination=[cluster.hostname],
                               reply=True)
    assert unlimited.name not in cluster.ask("stats")["rate_limits"]
