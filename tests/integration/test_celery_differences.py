"""Issue 11, part 2: where flowq deliberately differs from Celery, it says so.

Celery code that mutates a signature in place (``sig.link(cb)`` as a statement) warns at
its line and the callback is, visibly, not attached; the rewrite the warning gives works.
Assigning to a signature raises. The three decided differences (a group of one stays a
group, a chain's handle is its last step's, an errback runs for steps failed by an
upstream failure) each have a test. Against a real worker on Redis.
"""

from __future__ import annotations

import pytest

from flowq import chain, group
from flowq.exceptions import DiscardedSignatureWarning, ImmutableSignature
from tests.integration.app import add, errback, fail, note
from tests.integration.semantics_support import (
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    running,
    settle,
)
from tests.integration.semantics_tasks import queue_probe

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from running("redis", tmp_path_factory, "-Q", "{queue},{queue}.other",
                       queues=("other",))


def test_a_link_thrown_away_warns_at_its_line_and_attaches_nothing(cluster):
    runs = kind()
    sig = add.s(2, 2)
    with pytest.warns(DiscardedSignatureWarning,
                      match=r"test_celery_differences\.py:\d+: .* Write "
                            r"`sig = sig\.link\(note\.s\(kind=runs\)\)`"):
        sig.link(note.s(kind=runs))  # Celery: attaches the callback to sig
    assert sig.delay().get(timeout=T) == 4
    assert settle(cluster, runs, 0, wait=0.3) == []  # so the callback never ran
    sig = sig.link(note.s(kind=runs))  # the rewrite
    assert sig.delay().get(timeout=T) == 4
    assert len(settle(cluster, runs, 1, wait=0.3)) == 1


def test_an_errback_or_option_thrown_away_warns_and_the_rewrite_works(cluster):
    errs = kind()
    failing = fail.s(1)
    with pytest.warns(DiscardedSignatureWarning, match="the errback is never attached"):
        failing.link_error(errback.s(kind=errs))
    with pytest.raises(ValueError):
        failing.delay().get(timeout=T)
    assert settle(cluster, errs, 0, wait=0.3) == []
    failing = failing.link_error(errback.s(kind=errs))
    result = failing.delay()
    with pytest.raises(ValueError):
        result.get(timeout=T)
    assert settle(cluster, errs, 1, wait=0.3) == [result.id]

    probe, elsewhere = queue_probe.s(), f"{cluster.queue}.other"
    with pytest.warns(DiscardedSignatureWarning, match="the options are never applied"):
        probe.set(queue=elsewhere)
    assert probe.delay().get(timeout=T) == cluster.queue  # still the default queue
    probe = probe.set(queue=elsewhere)
    assert probe.delay().get(timeout=T) == elsewhere


def test_assigning_to_a_signature_raises_with_the_rewrite(cluster):
    sig = add.s(2, 2)
    with pytest.raises(ImmutableSignature, match=r"sig = sig\.replace\(args=\.\.\.\)"):
        sig.args = (3, 3)
    with pytest.raises(ImmutableSignature, match=r"sig = sig\.set\(queue='q'\)"):
        sig.options["queue"] = "q"
    assert sig.delay().get(timeout=T) == 4  # unchanged


def test_a_group_of_one_stays_a_group(cluster):
    # Celery unrolls a group of one member: [4, 5]; flowq keeps the shape it was given
    assert group([group(add.s(2, 2), add.s(2, 3))]).delay().get(timeout=T) == [[4, 5]]
    assert (add.s(1, 1) | group(add.s(1))).delay().get(timeout=T) == [3]


def test_a_chains_handle_is_its_last_step(cluster):
    result = chain(add.s(1, 1), add.s(1), add.s(1)).apply_async(task_id=f"last-{kind()}")
    assert result.id.startswith("last-") and result.get(timeout=T) == 4
    assert result.parent.get(timeout=T) == 3 and result.parent.parent.get(timeout=T) == 2
    assert result.parent.parent.parent is None


def test_an_errback_runs_for_a_step_failed_by_an_upstream_failure(cluster):
    errs, runs = kind(), kind()
    workflow = add.s(1, 1) | fail.s() | note.s(kind=runs).on_error(errback.s(kind=errs))
    result = workflow.delay()
    with pytest.raises(ValueError):
        result.get(timeout=T)
    # Celery never runs the last step's errback (the step never ran); flowq runs it once,
    # with the id of the task that failed first
    assert settle(cluster, errs, 1, wait=0.3) == [result.parent.id]
    assert cluster.ledger_list(runs) == []
