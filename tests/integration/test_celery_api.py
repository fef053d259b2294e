"""Issue 11, part 3: the Celery API a migrating user relies on, on a real worker.

Each test is written the way Celery code is written (``sig.freeze()`` then
``sig.delay()``, ``ResultSet([...]).get()``, ``self.add_to_chord(sig)``, a new-style
errback taking ``(request, exc, traceback)``, ...), on a real worker (Redis) for the whole
module; add_to_chord's backend operation is covered on every backend by the contract
suite (tests/runtime/backends).
"""

from __future__ import annotations

import json
import time

import pytest

from flowq import ResultSet, Signature, chain, chord, group, signature
from flowq.exceptions import ChordError
from flowq.canvas import ids
from flowq.runtime import advance
from tests.integration.app import add, app, errback, fail, identity, mul, remember, tsum
from tests.integration.compat_tasks import grows_its_chord, on_failure, priority_seen
from tests.integration.semantics_support import (
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    running,
    settle,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from running("redis", tmp_path_factory)


def test_freeze_fixes_the_ids_before_sending(cluster):
    sig = add.s(2, 2)
    res = sig.freeze()
    sig.delay()
    assert res.get(timeout=T) == 4 and sig.id == res.id

    workflow = chain(add.s(1, 1), add.s(1))
    res = workflow.freeze()
    assert workflow.delay().id == res.id
    assert res.get(timeout=T) == 3 and res.parent.get(timeout=T) == 2

    members = group(add.s(1, 1), add.s(2, 2))
    res = members.freeze()
    members.delay()
    assert [r.id for r in res] == [r.id for r in members.freeze()]
    assert res.get(timeout=T) == [2, 4]

    whole = chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    res = whole.freeze("chord-result-" + kind())
    whole.apply_async()
    assert res.get(timeout=T) == 6 and app.AsyncResult(res.id).get(timeout=T) == 6


def test_every_nested_shape_survives_a_json_round_trip_and_runs(cluster):
    shapes = {
        "chain of chords": chain(chord([add.s(1, 1), add.s(2, 2)], tsum.s()),
                                 chord([add.s(1), add.s(2)], tsum.s())),
        "chord of chains": chord([add.s(1, 1) | mul.s(2), add.s(2, 2) | mul.s(3)], tsum.s()),
        "group of chords": group(chord([add.s(1, 1)], tsum.s()), add.s(5, 5)),
        "chord with a chain body": chord([add.s(1, 1), add.s(2, 2)], tsum.s() | mul.s(10)),
        "linked": add.s(1, 1).on_error(errback.s()) | add.s(1).set(priority=3),
    }
    expected = {"chain of chords": 15, "chord of chains": 16, "group of chords": [2, 10],
                "chord with a chain body": 60, "linked": 3}
    for name, shape in shapes.items():
        text = json.dumps(dict(shape))  # a signature is a dict, as in Celery
        rebuilt = Signature.from_dict(json.loads(text), app=app)
        assert rebuilt == shape == signature(json.loads(text), app=app), name
        assert rebuilt.delay().get(timeout=T) == expected[name], name


def test_result_set_gathers_results_by_hand(cluster):
    rs = ResultSet([add.delay(1, 1), add.delay(2, 2)])
    rs.add(add.delay(3, 3))
    assert rs.get(timeout=T) == [2, 4, 6] and rs.join(timeout=T) == [2, 4, 6]
    assert rs.completed_count() == 3 and rs.ready() and rs.successful()
    seen = []
    rs.join(timeout=T, callback=lambda task_id, value: seen.append(value))
    assert seen == [2, 4, 6]
    failing = fail.delay(1)
    rs.add(failing)
    with pytest.raises(ValueError):
        rs.get(timeout=T)
    assert rs.failed() and rs.get(timeout=T, propagate=False)[3].__class__ is ValueError
    rs.discard(failing)
    rs.remove(rs.results[0].id)
    assert len(rs) == 2


def test_add_to_chord_grows_the_chord_its_member_is_in(cluster):
    result = chord([grows_its_chord.s(1, 100), add.s(2, 2)], identity.s()).delay()
    assert result.get(timeout=T) == [1, 4, 101]  # the added part's result comes last


def test_apply_throw_reraises_and_maybe_throw_does_not_wait(cluster):
    with pytest.raises(ValueError):
        fail.apply((1,), throw=True)
    assert fail.apply((1,)).state == "FAILURE"  # task_eager_propagates is off
    with pytest.raises(ValueError):
        (add.s(1, 1) | fail.s()).apply(throw=True)
    result = fail.delay(2)
    wait_for(result.ready, T, "the failure")
    with pytest.raises(ValueError):
        result.maybe_throw()
    assert isinstance(result.maybe_throw(propagate=False), ValueError)


def test_the_priority_a_task_was_sent_with_is_in_its_delivery_info(cluster):
    assert priority_seen.apply_async(priority=7).get(timeout=T) == 7
    assert priority_seen.delay().get(timeout=T) is None
    assert priority_seen.apply(priority=3).get() == 3  # eager, as Celery's apply()


def test_inspect_ping_replies_as_celery_does(cluster):
    inspect = app.control.inspect(destination=[cluster.hostname], timeout=5)
    assert inspect.ping() == {cluster.hostname: {"ok": "pong"}}


def test_bare_tasks_stand_for_their_signatures(cluster):
    assert chain(add.s(1, 1), identity).delay().get(timeout=T) == 2
    assert chord([add.s(1, 1), add.s(2, 2)], tsum).delay().get(timeout=T) == 6
    assert (add.s(3, 3) | identity).delay().get(timeout=T) == 6
    assert signature(add, (4, 4)).delay().get(timeout=T) == 8
    runs = kind()
    add.apply_async((1, 1), link=errback.s(kind=runs)).get(timeout=T)
    assert len(settle(cluster, runs, 1, wait=0.3)) == 1  # a link (here: errback, any task) ran


def test_errbacks_are_called_by_their_arity(cluster):
    new, old = kind(), kind()
    result = (add.s(1, 1) | fail.s()).on_error(on_failure.s(new)).on_error(errback.s(kind=old))
    result = result.delay()
    with pytest.raises(ValueError):
        result.get(timeout=T)
    (seen,) = settle(cluster, new, 1, wait=0.3)
    assert seen == (f"{result.id}|tests.integration.app.fail|(2,)|ValueError|"
                    f"expected failure (2,)|True")
    assert settle(cluster, old, 1, wait=0.3) == [result.id]  # a one-argument errback gets the id


def test_task_allow_error_cb_on_chord_header(cluster):
    def errbacks_run() -> int:
        errs = kind()
        c = chord([fail.s(1), fail.s(2), add.s(1, 1)], tsum.s()).on_error(
            remember.si("errback", kind=errs))
        with pytest.raises(ChordError):
            c.delay().get(timeout=T)
        time.sleep(0.5)
        return len(cluster.ledger_list(errs))

    assert errbacks_run() == 1  # Celery's default: the chord's errback, once
    app.conf.task_allow_error_cb_on_chord_header = True
    try:
        assert errbacks_run() == 3  # and once for each failed header task
    finally:
        app.conf.task_allow_error_cb_on_chord_header = False


def test_a_generator_header_is_taken_from_lazily(cluster, monkeypatch):
    monkeypatch.setattr(advance, "STREAM_BATCH", 5)
    taken = []

    def header():
        for i in range(12):
            if i == 5:  # the first batch must be out, and running, before more is taken
                wait_for(first_part.ready, T, "the first batch to run")
            taken.append(i)
            yield add.s(i, i)

    workflow = chord(header(), identity.s())
    handle = workflow.freeze()  # compiling takes nothing from the generator
    first_part = app.AsyncResult(ids.fanout_item_id(handle.parent.id, 0))
    assert taken == []
    result = workflow.delay()
    assert result.get(timeout=T) == [2 * i for i in range(12)]
    assert taken == list(range(12))
