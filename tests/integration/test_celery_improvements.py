"""Issue 11, part 4: what stays a flowq improvement over Celery, kept tested.

Chord error propagation and partial arguments where Celery gets them wrong: a failure
followed by a group, a chord in a chain given arguments, a chain in a chain given
arguments, nested chains and groups of one, a failed chord header nested in a chain.
Each is written as Celery users write it, and checked for its result, for what ran
(a Redis ledger) and for errbacks running once. Against a real worker on Redis.
"""

from __future__ import annotations

import pytest

from flowq import chain, chord, group
from flowq.exceptions import ChordError
from tests.integration.app import add, errback, fail, mul, note, tsum
from tests.integration.semantics_support import (
    T,
    kind,
    point_app_at_cluster,  # noqa: F401 - autouse
    running,
    settle,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    yield from running("redis", tmp_path_factory)


def test_a_failure_followed_by_a_group_fails_the_group_and_runs_the_errback_once(cluster):
    runs, errs = kind(), kind()
    workflow = (fail.s(1) | group(note.s(kind=runs), note.s(kind=runs))).on_error(
        errback.s(kind=errs))
    result = workflow.delay()
    with pytest.raises(ValueError, match="expected failure"):  # Celery: hangs or wrong error
        result.get(timeout=T)
    assert [member.state for member in result.results] == ["FAILURE", "FAILURE"]
    assert settle(cluster, errs, 1, wait=0.3) == [result.results[0].parent.id]
    assert cluster.ledger_list(runs) == []


def test_a_chord_in_a_chain_given_arguments_passes_them_to_its_header(cluster):
    # Celery #6176/#9012: the arguments do not reach the header
    workflow = chain(chord([add.s(), mul.s()], tsum.s()))
    assert workflow.apply_async(args=(2, 3)).get(timeout=T) == 11


def test_a_chain_in_a_chain_given_arguments_passes_them_to_its_first_step(cluster):
    # Celery #6200
    workflow = chain(chain(add.s(), add.s(1)), add.s(1))
    assert workflow.apply_async(args=(1, 1)).get(timeout=T) == 4


def test_nested_chains_and_groups_of_one_keep_their_shape(cluster):
    assert chain(chain(add.s(1, 1))).delay().get(timeout=T) == 2
    assert group(chain(add.s(1, 1))).delay().get(timeout=T) == [2]
    assert (add.s(1, 1) | group(chain(add.s(1))) | tsum.s()).delay().get(timeout=T) == 3
    assert chord([chain(add.s(1, 1))], tsum.s() | mul.s(2)).delay().get(timeout=T) == 4
    assert group(group(add.s(1, 1))).delay().get(timeout=T) == [[2]]


def test_a_failed_chord_header_in_a_chain_stops_the_chain_with_the_original_error(cluster):
    runs, errs = kind(), kind()
    workflow = (add.s(1, 1) | chord([add.s(1), fail.s()], tsum.s()) | note.s(kind=runs)
                ).on_error(errback.s(kind=errs))
    result = workflow.delay()
    with pytest.raises(ValueError, match="expected failure") as info:
        result.get(timeout=T)
    assert isinstance(info.value, ChordError)  # and a ChordError, for Celery's except
    assert len(settle(cluster, errs, 1, wait=0.3)) == 1 and cluster.ledger_list(runs) == []


def test_a_chord_whose_two_members_fail_runs_its_errback_once(cluster):
    bodies, errs = kind(), kind()
    body = note.s(kind=bodies)
    result = chord([fail.s(1), fail.s(2), add.s(1, 1)], body).on_error(
        errback.s(kind=errs)).delay()
    with pytest.raises(ChordError):
        result.get(timeout=T)
    assert len(settle(cluster, errs, 1, wait=0.3)) == 1  # Celery: once per failed member, or never
    assert cluster.ledger_list(bodies) == []
    assert result.parent.results[2].get(timeout=T) == 2  # the others' results remain
