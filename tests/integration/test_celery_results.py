"""Issue 11, part 1: a task's outcome is never lost, whatever goes wrong recording it.

Celery code returns values JSON cannot carry (a set, an AsyncResult, a workflow) and
replaces tasks with empty chains. Each must end the task as FAILURE with the real error,
``get()`` raising it, errbacks running once, and the task running once (never retried as
if the worker were lost, even with ``acks_late``). Run against a real worker on every
configuration where messages are carried differently (Redis, the embedded default: the
recording path is the broker's the same way on RabbitMQ). Only a real outage is retried:
that path is ``tests/reliability/test_broker_faults.py``'s.
"""

from __future__ import annotations

import time

import pytest

from flowq import chain
from flowq.exceptions import EncodeError, InvalidWorkflow
from tests.integration.app import add, app, errback, identity
from tests.integration.compat_tasks import (
    Unprintable,
    echo,
    make_set,
    raises_unprintable,
    replace_with_nothing,
    replace_with_nothing_late,
    replace_with_unsendable,
    retry_with_unsendable,
    returns,
    returns_late,
    type_name,
)
from tests.integration.semantics_support import (
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    running,
    settle,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module", params=["redis", "embedded"])
def cluster(request, tmp_path_factory):
    yield from running(request.param, tmp_path_factory)


def assert_failed_once(cluster, sent, error_type, *needles):
    """Each ``(result, runs, errs)`` in ``sent``: the task ran once, ended FAILURE with
    ``error_type`` naming ``needles``, and its errback ran once with its id."""
    for result, _, errs in sent:
        with pytest.raises(error_type) as info:
            result.get(timeout=T)
        for needle in needles:
            assert needle in str(info.value)
        assert result.state == "FAILURE"
        assert isinstance(result.result, error_type)
        wait_for(lambda: cluster.ledger_list(errs), T, f"the errback of {result.id}")
    time.sleep(0.3)  # time for a rerun or a second errback to show, if there were one
    for result, runs, errs in sent:
        assert cluster.ledger_list(errs) == [result.id]
        assert cluster.ledger_list(runs) == [result.id]  # once: no redelivery, no rerun
    assert "could not be recorded" not in cluster.log()


def send(task, *args):
    """Send ``task`` with a ledger list for its runs and an errback with one of its own."""
    runs, errs = kind(), kind()
    return task.apply_async((runs, *args), link_error=errback.s(kind=errs)), runs, errs


RESULTS = {"set": "a set", "handle": "an AsyncResult", "chain": "a Chain", "group": "a Group",
           "chord": "a Chord"}


@pytest.mark.parametrize("task", [returns, returns_late], ids=["early-ack", "acks_late"])
def test_a_result_json_cannot_carry_fails_the_task_with_an_encode_error(cluster, task):
    sent = {what: send(task, what) for what in RESULTS}
    assert_failed_once(cluster, list(sent.values()), EncodeError, task.name, "the return value")
    for what, (result, _, _) in sent.items():
        assert f"is {RESULTS[what]}, which the json serializer cannot carry" in str(result.result)
    assert "the return value['ids'] is a set" in str(sent["set"][0].result)
    assert "self.replace" in str(sent["chain"][0].result)


def test_replacing_a_task_with_an_empty_chain_fails_it_with_the_invalid_replace_error(cluster):
    sent = [send(task) for task in (replace_with_nothing, replace_with_nothing_late)]
    assert_failed_once(cluster, sent, InvalidWorkflow, "self.replace() in tests.integration",
                       "chain has no steps")


def test_an_unencodable_result_fails_the_rest_of_its_chain(cluster):
    runs, errs = kind(), kind()
    workflow = (returns.s(runs, "set") | add.s(1) | identity.s()).on_error(
        errback.s(kind=errs))
    result = workflow.delay()
    with pytest.raises(EncodeError, match="is a set"):
        result.get(timeout=T)
    assert result.parent.state == "FAILURE" and result.parent.parent.state == "FAILURE"
    assert settle(cluster, errs, 1, wait=0.3) == [result.parent.parent.id]
    assert len(cluster.ledger_list(runs)) == 1


def test_a_replacement_or_retry_that_cannot_be_sent_fails_the_task(cluster):
    replaced, retried = send(replace_with_unsendable), send(retry_with_unsendable)
    assert_failed_once(cluster, [replaced], EncodeError, "tests.integration.app.add",
                       "argument 0 is an object")
    assert_failed_once(cluster, [retried], EncodeError, retry_with_unsendable.name,
                       "argument 0 is an object")


def test_an_exception_that_cannot_be_shown_is_still_recorded(cluster):
    assert_failed_once(cluster, [send(raises_unprintable)], Unprintable)


def test_arguments_json_cannot_carry_fail_at_publish_naming_the_task_and_argument(cluster):
    with pytest.raises(EncodeError, match=r"task 'tests\.integration\.app\.add': argument 1 "
                                          r"is an object"):
        add.delay(1, object())
    with pytest.raises(EncodeError, match=r"keyword argument 'value'\['ids'\] is a set"):
        identity.delay(value={"ids": {1, 2}})
    with pytest.raises(EncodeError, match=r"at chain\[1\]: argument 1 is a set"):
        chain(add.s(1, 1), add.s({2})).delay()
    assert add.delay(1, 2).get(timeout=T) == 3  # nothing half-sent: the next call works


@pytest.fixture
def pickle_cluster(tmp_path_factory):
    """A worker storing results with pickle and accepting pickle bodies (Redis)."""
    saved = app.conf.result_serializer, app.conf.accept_content
    app.conf.result_serializer, app.conf.accept_content = "pickle", ["json", "pickle"]
    try:
        yield from running("redis", tmp_path_factory, env={
            "FLOWQ_TEST_RESULT_SERIALIZER": "pickle", "FLOWQ_TEST_ACCEPT": "json,pickle"})
    finally:
        app.conf.result_serializer, app.conf.accept_content = saved
        app._reset_runtime()


def test_types_round_trip_or_are_refused_never_changed_silently(pickle_cluster):
    # pickle carries sets, frozensets and tuples both ways
    for value in ({1, 2}, frozenset({3}), (1, 2), [1, (2, 3)]):
        back = echo.apply_async((value,), serializer="pickle").get(timeout=T)
        assert back == value and type(back) is type(value)
    # JSON has no tuple: it arrives as a list (documented), and a set is refused at once
    assert type_name.delay((1, 2)).get(timeout=T) == "list"
    with pytest.raises(EncodeError, match="argument 0 is a set"):
        type_name.delay({1, 2})
    # a set the pickle result serializer stored cannot ride in the next step's JSON body:
    # that step fails, naming itself and the argument
    result = (make_set.s(3) | echo.s()).delay()
    with pytest.raises(EncodeError, match=r"task 'tests\.integration\.compat_tasks\.echo'"
                                          r".*argument 0 is a set"):
        result.get(timeout=T)
    assert result.parent.get(timeout=T) == {0, 1, 2}
