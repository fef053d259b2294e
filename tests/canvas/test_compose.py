"""Celery's composition rules: how ``|``, chain, group and chord combine, and what runs."""

from __future__ import annotations

import pytest

from flowq import Flowq, chain, chord, group, signature
from flowq.canvas import Chain, Chord, Group

from .helpers import run
from .tasks import RUNS, add, collect, const, ident, mul, tsum

# -- structure -------------------------------------------------------------------------------


def test_pipe_builds_a_flat_chain() -> None:
    c = add.s(1, 1) | add.s(2) | add.s(3)
    assert isinstance(c, Chain)
    assert c.tasks == (add.s(1, 1), add.s(2), add.s(3))


def test_pipe_shares_steps_without_changing_the_chain_it_extends() -> None:
    base = add.s(1, 1) | add.s(2)
    left, right = base | add.s(3), base | mul.s(4)
    assert base.tasks == (add.s(1, 1), add.s(2))
    assert left.tasks == (add.s(1, 1), add.s(2), add.s(3))
    assert right.tasks == (add.s(1, 1), add.s(2), mul.s(4))
    assert left == chain(add.s(1, 1), add.s(2), add.s(3)) != right
    assert hash(left) == hash(chain(add.s(1, 1), add.s(2), add.s(3)))


def test_a_piped_chain_survives_pickling_and_copying() -> None:
    import copy
    import pickle

    c = signature(add.name, (1, 1))  # by name: a task's bound app does not pickle
    for i in range(50):
        c = c | signature(add.name, (i,))
    assert pickle.loads(pickle.dumps(c)) == c
    assert copy.deepcopy(c) == c


def test_chain_flattens_nested_chains_without_options() -> None:
    inner = chain(add.s(1), add.s(2))
    assert chain(add.s(0, 0), inner, add.s(3)).tasks == (add.s(0, 0), add.s(1), add.s(2),
                                                         add.s(3))
    assert (inner | inner).tasks == (add.s(1), add.s(2), add.s(1), add.s(2))
    assert chain(add.s(0, 0), add.s(1)) == add.s(0, 0) | add.s(1)


def test_a_chain_with_options_of_its_own_stays_one_step() -> None:
    inner = chain(add.s(1), add.s(2), queue="q")
    outer = add.s(0, 0) | inner
    assert outer.tasks == (add.s(0, 0), inner)


def test_chain_accepts_a_list_or_a_generator() -> None:
    expected = chain(add.s(0, 0), add.s(1), add.s(2))
    assert chain([add.s(0, 0), add.s(1), add.s(2)]) == expected
    assert chain(s for s in [add.s(0, 0), add.s(1), add.s(2)]) == expected


def test_group_takes_signatures_a_list_or_a_generator() -> None:
    expected = (add.s(1, 1), add.s(2, 2))
    assert group(add.s(1, 1), add.s(2, 2)).tasks == expected
    assert group([add.s(1, 1), add.s(2, 2)]).tasks == expected
    assert group(add.s(i, i) for i in (1, 2)).tasks == expected


def test_group_rejects_what_is_not_a_signature() -> None:
    with pytest.raises(TypeError, match=r"workflow step 1 is not a signature: 42"):
        group([add.s(1, 1), 42])


def test_group_piped_into_a_signature_is_a_chord() -> None:
    c = group(add.s(1, 1), add.s(2, 2)) | tsum.s()
    assert c == chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    assert isinstance(c, Chord)


def test_chain_ending_in_a_group_piped_into_a_signature_ends_in_a_chord() -> None:
    c = chain(add.s(1, 1), group(add.s(1), add.s(2))) | tsum.s()
    assert c == chain(add.s(1, 1), chord([add.s(1), add.s(2)], tsum.s()))
    assert chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s()) == c


def test_chord_header_may_be_a_list_a_generator_or_a_group() -> None:
    expected = chord(group(add.s(1, 1), add.s(2, 2)), tsum.s())
    assert chord([add.s(1, 1), add.s(2, 2)], tsum.s()) == expected
    # a generator is taken from lazily, while the chord is sent: it is not a list (nor a
    # value: a generator is consumed once), and runs the same
    streamed = chord((add.s(i, i) for i in (1, 2)), tsum.s())
    assert streamed.streamed and not expected.streamed and streamed != expected
    assert streamed.apply().get() == expected.apply().get() == 6


def test_chord_header_alone_has_no_body_until_called() -> None:
    c = chord([add.s(1, 1), add.s(2, 2)])
    assert c.body is None
    assert c.tasks == (add.s(1, 1), add.s(2, 2))


def test_chord_header_called_with_a_body_sends_the_chord(always_eager: Flowq) -> None:
    assert chord([add.s(1, 1), add.s(2, 2)])(tsum.s()).get(timeout=5) == 6


def test_a_group_of_one_stays_a_group() -> None:
    c = group(add.s(1, 1))
    assert isinstance(c, Group)
    assert isinstance(group(add.s(1, 1)) | tsum.s(), Chord)


def test_composition_keeps_its_shape_chords_are_never_merged() -> None:
    inner = chord([add.s(1, 1)], tsum.s())
    outer = chord([inner, add.s(2, 2)], tsum.s())
    assert outer.header.tasks[0] == inner


# -- results (eager runs) ----------------------------------------------------------------------


def test_each_step_receives_its_parents_result_first() -> None:
    assert run(add.s(1, 1) | mul.s(10) | add.s(1)) == 21


def test_immutable_steps_do_not_receive_the_parents_result() -> None:
    assert run(add.s(1, 1) | add.si(5, 5) | add.s(1)) == 11
    assert run(add.s(1, 1) | const.si(7)) == 7


def test_group_result_is_the_list_of_member_results_in_order() -> None:
    assert run(group(add.s(i, i) for i in range(5))) == [0, 2, 4, 6, 8]


def test_a_group_of_one_returns_a_one_element_list() -> None:
    assert run(group(add.s(1, 1))) == [2]
    assert run(group([add.s(1, 1)]) | tsum.s()) == 2


def test_an_empty_group_returns_an_empty_list() -> None:
    assert run(group([])) == []
    assert run(add.s(1, 1) | group([])) == []


def test_a_chord_with_an_empty_header_calls_its_body_with_an_empty_list() -> None:
    assert run(chord([], collect.s())) == [[]]
    assert run(chord([], tsum.s())) == 0
    assert RUNS["collect"] == 1 and RUNS["tsum"] == 1


def test_chord_body_receives_the_header_results_in_order() -> None:
    assert run(chord([add.s(3, 3), add.s(1, 1), add.s(2, 2)], collect.s())) == [[6, 2, 4]]


def test_group_in_a_chain_gives_every_member_the_parents_result() -> None:
    assert run(add.s(1, 1) | group(add.s(1), mul.s(10))) == [3, 20]
    assert run(add.s(1, 1) | group(add.s(1), mul.s(10)) | tsum.s()) == 23


def test_chord_in_a_chain() -> None:
    c = add.s(1, 1) | chord([add.s(1), mul.s(10)], tsum.s()) | add.s(1)
    assert run(c) == 24


def test_chain_in_a_group() -> None:
    c = group(add.s(1, 1) | add.s(1), add.s(2, 2) | mul.s(3))
    assert run(c) == [3, 12]


def test_group_in_a_group_nests_the_lists() -> None:
    assert run(group(group(add.s(1, 1), add.s(2, 2)), add.s(3, 3))) == [[2, 4], 6]


def test_chord_in_a_chord_header() -> None:
    c = chord([chord([add.s(1, 1), add.s(2, 2)], tsum.s()), add.s(3, 3)], tsum.s())
    assert run(c) == 12


def test_chord_body_that_is_a_chain() -> None:
    assert run(chord([add.s(1, 1), add.s(2, 2)], tsum.s() | add.s(10))) == 16


def test_chord_body_that_is_a_group() -> None:
    c = chord([add.s(1, 1), add.s(2, 2)], group(tsum.s(), collect.s()))
    assert run(c) == [6, [[2, 4]]]


def test_group_followed_by_a_group_is_a_chord_whose_body_is_a_group() -> None:
    c = chain(group(add.s(1, 1), add.s(2, 2)), group(tsum.s(), collect.s()))
    assert isinstance(c.tasks[0], Chord)
    assert run(c) == [6, [[2, 4]]]


# -- partial arguments -------------------------------------------------------------------------


def test_partial_args_reach_the_header_of_a_chord_in_a_chain() -> None:
    # Celery #6176 / #6200: the arguments given to apply() must reach the chord's header.
    assert chain(chord([add.s(), add.s()], tsum.s())).apply(args=(1, 1)).get(timeout=5) == 4


def test_partial_args_reach_the_first_step_of_a_nested_chain() -> None:
    # Celery #9012
    c = chain(chain(add.s(), add.s(1)), add.s(1))
    assert c.apply(args=(1, 1)).get(timeout=5) == 4


def test_partial_args_reach_every_member_of_a_group() -> None:
    assert group(add.s(1), mul.s(10)).apply(args=(2,)).get(timeout=5) == [3, 20]


def test_partial_kwargs_reach_the_first_steps() -> None:
    assert chain(add.s(1), add.s(1)).apply(kwargs={"y": 5}).get(timeout=5) == 7


def test_partial_args_do_not_reach_later_steps_or_the_chord_body() -> None:
    assert (add.s() | ident.s()).apply(args=(1, 2)).get(timeout=5) == 3
    assert chord([add.s(1)], collect.s()).apply(args=(1,)).get(timeout=5) == [[2]]


def test_immutable_first_steps_ignore_partial_args() -> None:
    assert chain(add.si(1, 1), add.s(1)).apply(args=(100,)).get(timeout=5) == 3
    assert group(add.si(1, 1), add.s(1)).apply(args=(5,)).get(timeout=5) == [2, 6]


def test_delay_passes_partial_args(always_eager: Flowq) -> None:
    assert chain(add.s(), add.s(1)).delay(1, 1).get(timeout=5) == 3
    assert group(add.s(1), add.s(2)).delay(10).get(timeout=5) == [11, 12]


# -- ids -----------------------------------------------------------------------------------------


def test_a_chains_id_is_its_last_steps_id(app: Flowq) -> None:
    c = chain(add.s(1, 1), add.s(2), add.s(3))
    workflow = app.compile(c, options={"task_id": "X"})
    assert workflow.output == len(workflow) - 1
    assert workflow.output_id == "X"
    assert workflow.nodes[workflow.output].path == "chain[2]"
    assert "X" not in workflow.ids()[:2]


def test_the_id_of_a_chain_is_its_last_steps_and_of_a_chord_its_bodys() -> None:
    # as in Celery: a part's id is the id of the part holding its result
    assert chain(add.s(1, 1), add.s(1).set(task_id="z")).id == "z"
    assert (add.s(1, 1) | add.s(1) | add.s(1).set(task_id="z")).id == "z"
    assert chain(add.s(1, 1), chain(add.s(1), add.s(2).set(task_id="z"), queue="q")).id == "z"
    assert chain(add.s(1, 1).set(task_id="a"), add.s(1)).id is None
    assert chain(add.s(1, 1), add.s(1).set(task_id="z")).set(task_id="own").id == "own"
    assert chord([add.s(1, 1)], tsum.s().set(task_id="b")).id == "b"
    assert (group(add.s(1, 1)) | tsum.s().set(task_id="b")).id == "b"
    assert chord([add.s(1, 1)]).id is None
    # a group's result is the join of its members: only its own task_id names it
    assert group(add.s(1, 1).set(task_id="m")).id is None
    assert group(add.s(1, 1), task_id="g").id == "g"
    assert chain().id is None


def test_the_id_of_a_part_is_the_id_its_compiled_result_gets(app: Flowq) -> None:
    for c in (chain(add.s(1, 1), add.s(1).set(task_id="z")),
              chord([add.s(1, 1)], tsum.s().set(task_id="b")) | add.s(1).set(task_id="c"),
              group(add.s(1, 1), task_id="g")):
        assert app.compile(c).output_id == c.id


def test_apply_async_with_task_id_names_the_last_step(app: Flowq) -> None:
    # memory:// broker: the messages are published, nothing consumes them
    result = chain(add.s(1, 1), add.s(2), add.s(3)).apply_async(task_id="last-step")
    assert result.id == "last-step"
    assert result.parent is not None and result.parent.id != "last-step"


def test_task_id_given_to_a_group_or_a_chord_names_its_result(app: Flowq) -> None:
    assert app.compile(group(add.s(1, 1), add.s(2, 2)), options={"task_id": "G"}).output_id == "G"
    c = chord([add.s(1, 1)], tsum.s())
    assert app.compile(c, options={"task_id": "C"}).output_id == "C"
    assert app.compile(c.set(task_id="C2")).output_id == "C2"


def test_eager_result_ids_are_the_compiled_ids(app: Flowq) -> None:
    c = chain(add.s(1, 1).set(task_id="seed-1"), add.s(2), add.s(3))
    ids = app.compile(c).ids()
    result = c.apply()
    assert [result.parent.parent.id, result.parent.id, result.id] == ids
    assert result.get(timeout=5) == 7


# -- options ----------------------------------------------------------------------------------


def options_by_path(app: Flowq, canvas, **call) -> dict[str, dict]:
    workflow = app.compile(canvas, options=call)
    return {node.path: dict(node.options) for node in workflow.nodes if node.kind != "join"}


def test_call_time_options_win_over_stored_ones(app: Flowq) -> None:
    sig = add.s(1, 1).set(queue="stored", priority=1)
    assert options_by_path(app, sig) == {"task": {"queue": "stored", "priority": 1}}
    assert options_by_path(app, sig, queue="call") == {"task": {"queue": "call", "priority": 1}}


def test_composite_options_are_defaults_the_inner_task_wins(app: Flowq) -> None:
    c = chain(add.s(1, 1), add.s(2).set(queue="own"), add.s(3), queue="chain-q", priority=3)
    assert options_by_path(app, c) == {
        "chain[0]": {"queue": "chain-q", "priority": 3},
        "chain[1]": {"queue": "own", "priority": 3},
        "chain[2]": {"queue": "chain-q", "priority": 3},
    }
    g = group(add.s(1, 1), add.s(2, 2).set(queue="own"), queue="group-q")
    assert options_by_path(app, g) == {"group[0]": {"queue": "group-q"},
                                       "group[1]": {"queue": "own"}}


def test_call_time_options_win_over_composite_and_inner_options(app: Flowq) -> None:
    c = chain(add.s(1, 1), add.s(2).set(queue="own"), queue="chain-q")
    assert options_by_path(app, c, queue="call") == {"chain[0]": {"queue": "call"},
                                                    "chain[1]": {"queue": "call"}}


def test_chord_options_reach_header_and_body(app: Flowq) -> None:
    c = chord([add.s(1, 1), add.s(2, 2)], tsum.s(), queue="c")
    assert options_by_path(app, c) == {"chord.header[0]": {"queue": "c"},
                                       "chord.header[1]": {"queue": "c"},
                                       "chord.body": {"queue": "c"}}


def test_countdown_on_a_chain_delays_only_its_first_step(app: Flowq) -> None:
    c = chain(add.s(1, 1), add.s(2), countdown=5, expires=30)
    assert options_by_path(app, c) == {"chain[0]": {"countdown": 5, "expires": 30},
                                       "chain[1]": {}}
    assert options_by_path(app, chain(add.s(1, 1), add.s(2)), countdown=5) == {
        "chain[0]": {"countdown": 5}, "chain[1]": {}}


def test_countdown_on_a_group_or_chord_delays_its_members_not_the_body(app: Flowq) -> None:
    g = group(add.s(1, 1), add.s(1, 2) | add.s(3), countdown=5)
    assert options_by_path(app, g) == {"group[0]": {"countdown": 5},
                                       "group[1].chain[0]": {"countdown": 5},
                                       "group[1].chain[1]": {}}
    c = chord([add.s(1, 1), add.s(2, 2)], tsum.s())
    assert options_by_path(app, c, eta="2030-01-01T00:00:00") == {
        "chord.header[0]": {"eta": "2030-01-01T00:00:00"},
        "chord.header[1]": {"eta": "2030-01-01T00:00:00"},
        "chord.body": {}}


def test_countdown_on_a_composite_inside_a_chain_delays_its_own_first_steps(
        app: Flowq) -> None:
    c = add.s(1, 1) | chain(add.s(2), add.s(3), countdown=5)
    assert options_by_path(app, c) == {"chain[0]": {}, "chain[1].chain[0]": {"countdown": 5},
                                       "chain[1].chain[1]": {}}
    c = add.s(1, 1) | chord([add.s(1), add.s(2)], tsum.s()).set(expires=60)
    assert options_by_path(app, c) == {"chain[0]": {},
                                       "chain[1].chord.header[0]": {"expires": 60},
                                       "chain[1].chord.header[1]": {"expires": 60},
                                       "chain[1].chord.body": {}}
