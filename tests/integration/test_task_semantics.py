"""Task semantics on real workers: retries, countdown/eta/expires, ids, links, replace.

A named worker (2 prefork children) runs per configuration (Redis + Redis, RabbitMQ +
Redis, embedded SQLite) for the whole module. Side effects are counted in the Redis
ledger, so "ran exactly N times" and "never ran" are asserted, not guessed.
Time-limit, delivery, revocation and routing semantics have their own modules
(``test_task_time.py``, ``test_task_delivery.py``, ``test_task_revoke.py``,
``test_task_routing.py``).
"""

from __future__ import annotations

import datetime
import itertools
import math
import time
import uuid

import pytest

from flowq import Flowq, _state, chord, states
from flowq.exceptions import (
    ChordError,
    InvalidWorkflow,
    MaxRetriesExceededError,
    TaskRevokedError,
)
from tests.integration.app import add, app, collect, errback, fail, identity
from tests.integration.semantics_support import (
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    running,
    settle,
    stamps,
    wait_for,
    wait_state,
)
from tests.integration.semantics_tasks import (
    always_retry,
    autoretry_down,
    call_child,
    flaky,
    header_probe,
    labelled,
    long_sleep,
    no_result,
    queue_probe,
    replace_with_failure,
    replace_with_sum,
    retry_unbounded,
    stamp,
    with_callback,
)

pytestmark = pytest.mark.timeout(120)
UTC = datetime.UTC
#: a delayed task may be published this much before its eta (the publisher's threshold)
EARLY = 0.06


@pytest.fixture(scope="module", params=["redis", "amqp", "embedded"])
def cluster(request, tmp_path_factory):
    yield from running(request.param, tmp_path_factory)


# -- retries -----------------------------------------------------------------------------------


def test_retry_keeps_its_id_and_shows_retry_while_waiting(cluster):
    runs = kind()
    result = flaky.apply_async((7, runs), {"failures": 1, "countdown": 2})
    wait_state(result, states.RETRY, timeout=10)
    assert isinstance(result.result, ValueError)  # the reason for the retry
    assert result.get(timeout=T) == 7
    assert cluster.ledger_list(runs) == [f"{result.id}:0", f"{result.id}:1"]


def test_request_retries_counts_every_retry(cluster):
    runs = kind()
    result = flaky.apply_async((7, runs), {"failures": 3, "countdown": 0.05})
    assert result.get(timeout=T) == 7
    assert settle(cluster, runs, 4, wait=0.5) == [f"{result.id}:{n}" for n in range(4)]


def test_max_retries_exhausted_fails_with_the_last_exception(cluster):
    runs = kind()
    result = always_retry.delay(runs)
    with pytest.raises(MaxRetriesExceededError, match="ValueError: boom on attempt 2"):
        result.get(timeout=T)
    assert result.state == states.FAILURE
    assert "boom on attempt 2" in result.traceback
    # max_retries=2: the first run and two retries, nothing after
    assert settle(cluster, runs, 3) == [f"{result.id}:{n}" for n in range(3)]


def test_max_retries_none_retries_until_it_succeeds(cluster):
    runs = kind()
    result = retry_unbounded.delay(runs, 5)  # past the default max_retries (3)
    assert result.get(timeout=T) == 5
    assert len(cluster.ledger_list(runs)) == 6


def test_autoretry_exception_loop_alone_and_in_a_chord(cluster):
    """C9: exactly max_retries + 1 attempts with the configured backoff, then FAILURE;
    in a chord the body's errback runs once and the body never."""
    alone, member, bodies, errbacks = kind(), kind(), kind(), kind()
    result = autoretry_down.delay(alone)
    body = collect.s(kind=bodies).on_error(errback.s(kind=errbacks))
    in_chord = chord([add.s(1, 1), autoretry_down.s(member)], body).delay()

    with pytest.raises(MaxRetriesExceededError, match="ConnectionError: service down"):
        result.get(timeout=T)
    with pytest.raises(MaxRetriesExceededError) as info:
        in_chord.get(timeout=T)
    assert isinstance(info.value, ChordError)
    for runs in (alone, member):
        attempts = [line.split(":") for line in settle(cluster, runs, 4)]
        assert [int(n) for n, _ in attempts] == [0, 1, 2, 3]
        times = [float(t) for _, t in attempts]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        # retry_backoff=0.2, no jitter: 0.2, 0.4, 0.8 s (never earlier)
        assert all(gap >= 0.2 * 2 ** n - EARLY for n, gap in enumerate(gaps)), gaps
    assert len(cluster.ledger_list(errbacks)) == 1
    assert cluster.ledger_list(bodies) == []


def test_retried_task_in_a_chain_continues_the_chain(cluster):
    runs = kind()
    result = (flaky.s(5, runs, failures=1, countdown=0.1) | add.s(10)).delay()
    assert result.get(timeout=T) == 15
    assert cluster.ledger_list(runs) == [f"{result.parent.id}:0", f"{result.parent.id}:1"]


def test_retried_chord_member_is_counted_once(cluster):
    runs, bodies = kind(), kind()
    header = [flaky.s(1, runs, failures=1, countdown=0.1),
              flaky.s(2, runs, failures=2, countdown=0.1), add.s(3, 0)]
    result = chord(header, collect.s(kind=bodies)).delay()
    assert result.get(timeout=T) == [1, 2, 3]
    assert len(settle(cluster, bodies, 1)) == 1
    assert len(cluster.ledger_list(runs)) == 5


# -- countdown, eta, expires ----------------------------------------------------------------------


@pytest.fixture
def far_from_utc(monkeypatch):
    """Run the test process in UTC+5, so a naive eta read as local time would be 5 h off."""
    monkeypatch.setenv("TZ", "Etc/GMT-5")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_countdown_and_eta_do_not_run_early(cluster, far_from_utc):
    runs = kind()
    now = datetime.datetime.now(UTC)
    plus_five = datetime.timezone(datetime.timedelta(hours=5))
    due = {
        "countdown": (time.time() + 1.0, {"countdown": 1.0}),
        "aware": ((now + datetime.timedelta(seconds=1.2)).timestamp(),
                  {"eta": now + datetime.timedelta(seconds=1.2)}),
        "other zone": ((now + datetime.timedelta(seconds=1.1)).timestamp(),
                       {"eta": (now + datetime.timedelta(seconds=1.1)).astimezone(plus_five)}),
        # naive datetimes are UTC, whatever the local time zone
        "naive": ((now + datetime.timedelta(seconds=1.4)).timestamp(),
                  {"eta": (now + datetime.timedelta(seconds=1.4)).replace(tzinfo=None)}),
    }
    sent = {name: stamp.apply_async((runs,), **options) for name, (_, options) in due.items()}
    for result in sent.values():
        result.get(timeout=T)
    ran = stamps(cluster, runs)
    for name, (eta, _) in due.items():
        assert eta - EARLY <= ran[sent[name].id] <= eta + 20, name


def test_delayed_task_waits_in_the_delay_index_not_in_the_worker(cluster):
    runs = kind()
    result = stamp.apply_async((runs,), countdown=2)
    assert app.backend.delay_count() >= 1
    assert cluster.ask("reserved") == []
    assert result.id not in [job["id"] for job in cluster.ask("active")]
    assert cluster.ask("scheduled")["delayed_in_backend"] >= 1
    assert result.state == states.PENDING
    result.get(timeout=T)
    wait_for(lambda: app.backend.delay_count() == 0, 10, "delay index not emptied")


def test_expired_while_waiting_is_revoked_and_never_runs(cluster):
    """Both pool processes are busy; delayed tasks come due, wait, and expire."""
    busy, runs, later = kind(), kind(), kind()
    blockers = [long_sleep.delay(busy, 2.2) for _ in range(2)]
    settle(cluster, busy, 2, wait=0)
    in_a_second = datetime.datetime.now(UTC) + datetime.timedelta(seconds=1)
    by_seconds = stamp.apply_async((runs,), countdown=0.2, expires=1.0)
    by_datetime = stamp.apply_async((runs,), countdown=0.2, expires=in_a_second)
    in_chain = (stamp.s(runs) | labelled.s(later)).apply_async(countdown=0.2, expires=1.0)

    for result in (by_seconds, by_datetime, in_chain.parent):
        wait_state(result, states.REVOKED)
        with pytest.raises(TaskRevokedError, match="expired"):
            result.get(timeout=T)
    with pytest.raises(TaskRevokedError):
        in_chain.get(timeout=T)  # the later step fails too, it does not hang
    assert in_chain.state in (states.REVOKED, states.FAILURE)
    for blocker in blockers:
        blocker.get(timeout=T)
    assert cluster.ledger_list(runs) == [] and cluster.ledger_list(later) == []


#: call options that can never work, and what the error must mention
BAD_TIMES = [
    ({"countdown": 5, "expires": 2}, "could never run"),  # expires before its eta
    ({"expires": -1}, "already past"),
    ({"expires": datetime.datetime(2000, 1, 1, tzinfo=UTC)}, "already past"),
    ({"countdown": math.nan}, "countdown"),
    ({"countdown": "soon"}, "countdown"),
    ({"eta": datetime.datetime.now(UTC) + datetime.timedelta(days=400)}, "task_max_eta"),
]


def test_bad_eta_or_expires_is_rejected_at_publish(cluster):
    runs = kind()
    before = app.backend.delay_count()
    for options, problem in BAD_TIMES:
        with pytest.raises(InvalidWorkflow, match=problem):
            stamp.apply_async((runs,), **options)
    assert app.backend.delay_count() == before
    time.sleep(0.3)
    assert cluster.ledger_list(runs) == []


@pytest.mark.parametrize("options", [{"eta": "not a time"}, {"expires": "never"}],
                         ids=["eta", "expires"])
def test_unparsable_eta_or_expires_is_an_invalid_workflow(cluster, options):
    with pytest.raises(InvalidWorkflow, match=next(iter(options))):
        stamp.apply_async((kind(),), **options)


# -- results, ids, links -------------------------------------------------------------------------


def test_ignore_result_stores_nothing_for_a_standalone_task(cluster):
    runs = kind()
    result = no_result.delay(runs)
    settle(cluster, runs, 1, wait=0.5)
    assert result.state == states.PENDING
    # inside a workflow the result is what the next step needs, so it is kept
    assert (no_result.si(runs) | identity.s()).delay().get(timeout=T) == "thrown away"


def test_ignore_result_given_for_one_call(cluster):
    runs = kind()
    result = stamp.apply_async((runs,), ignore_result=True)
    settle(cluster, runs, 1, wait=0.5)
    assert result.state == states.PENDING
    assert stamp.apply_async((runs,)).get(timeout=T) is not None  # other calls keep theirs


def test_custom_headers_reach_the_task(cluster):
    sent = header_probe.apply_async(("tenant",), headers={"tenant": "acme", "n": [1, 2]})
    assert sent.get(timeout=T) == {"tenant": "acme", "n": [1, 2]}
    with pytest.raises(InvalidWorkflow, match=r"headers \['id'\] are flowq's own"):
        header_probe.apply_async(("id",), headers={"id": "forged"})


def test_a_signature_passed_as_an_argument_can_be_sent_by_the_task(cluster):
    callback_id = with_callback.delay(5, add.s(10)).get(timeout=T)
    assert app.AsyncResult(callback_id).get(timeout=T) == 15


def test_custom_task_id(cluster):
    runs = kind()
    task_id = f"semantics-{uuid.uuid4()}"
    result = stamp.apply_async((runs,), task_id=task_id)
    assert result.id == task_id
    app.AsyncResult(task_id).get(timeout=T)
    assert list(stamps(cluster, runs)) == [task_id]


def test_task_sent_from_a_task_has_the_caller_as_parent_and_its_root(cluster):
    result = (add.s(1, 1) | call_child.s()).delay()
    seen = result.get(timeout=T)
    root = result.parent.id
    assert seen["id"] == result.id and seen["root_id"] == root
    child = app.AsyncResult(seen["child"]).get(timeout=T)
    assert child["id"] == seen["child"]
    assert child["parent_id"] == result.id and child["root_id"] == root


def test_link_and_link_error_on_a_plain_signature(cluster):
    linked, errbacks = kind(), kind()
    ok = add.apply_async((2, 3), link=labelled.s(linked))
    assert ok.get(timeout=T) == 5
    assert settle(cluster, linked, 1) == ["5"]
    bad = fail.s(1).link_error(errback.s(kind=errbacks)).delay()
    with pytest.raises(ValueError):
        bad.get(timeout=T)
    assert settle(cluster, errbacks, 1) == [bad.id]


def test_send_task_with_countdown_and_queue(cluster):
    runs = kind()
    earliest = time.time() + 1.0
    result = app.send_task(stamp.name, args=[runs], countdown=1.0, queue=cluster.queue)
    ran = result.get(timeout=T)
    assert earliest - EARLY <= ran <= earliest + 20


def test_replace_in_a_chain_continues_with_the_replacements_result(cluster):
    result = (add.s(1, 1) | replace_with_sum.s(10) | add.s(100)).delay()
    assert result.get(timeout=T) == (2 + 10) * 2 + 100
    assert result.parent.get(timeout=T) == 24  # the replaced step's own result


def test_replaced_chord_member_is_counted_once(cluster):
    bodies = kind()
    result = chord([replace_with_sum.s(1, 2), add.s(1, 1)], collect.s(kind=bodies)).delay()
    assert result.get(timeout=T) == [(1 + 2) * 2, 2]
    assert len(settle(cluster, bodies, 1)) == 1


def test_failing_replacement_fails_the_chain(cluster):
    later = kind()
    result = (add.s(1, 1) | replace_with_failure.s() | labelled.s(later)).delay()
    with pytest.raises(ValueError, match="expected failure"):
        result.get(timeout=T)
    assert result.parent.state == states.FAILURE
    time.sleep(0.5)
    assert cluster.ledger_list(later) == []


def test_shadow_name_appears_in_the_worker_log(cluster):
    shadow = f"shadowed-{uuid.uuid4().hex[:6]}"
    result = add.apply_async((1, 1), shadow=shadow)
    assert result.get(timeout=T) == 2
    wait_for(lambda: f"Task {shadow}[{result.id}] succeeded" in cluster.log(), 10,
             "no log line with the shadow name")
    assert f"Task {shadow}[{result.id}] received" in cluster.log()


def test_default_queue(cluster):
    assert app.conf.task_default_queue == cluster.queue  # set by the harness
    assert queue_probe.delay().get(timeout=T) == cluster.queue
    assert [q["name"] for q in cluster.ask("active_queues")] == [cluster.queue]
    try:
        assert Flowq("x").conf.task_default_queue == "flowq"
    finally:
        _state.set_current_app(app)

