"""Validation names every bad node by its path and says what is wrong with it."""

from __future__ import annotations

import pytest

from flowq import Flowq, chain, chord, group, signature
from flowq.canvas import fanout
from flowq.exceptions import InvalidWorkflow

from .tasks import add, errback, kw_only, noop, numbers, process, tsum, whoami


def problems(app: Flowq, canvas, **options) -> list[tuple[str, str]]:
    with pytest.raises(InvalidWorkflow) as info:
        app.validate(canvas, **options)
    return info.value.problems


def message(app: Flowq, canvas, **options) -> str:
    with pytest.raises(InvalidWorkflow) as info:
        app.validate(canvas, **options)
    return str(info.value)


def test_a_valid_workflow_validates(app: Flowq) -> None:
    workflow = app.validate(add.s(1, 1) | chord([add.s(1), add.s(2)], tsum.s()))
    assert len(workflow) == 5


def test_unknown_task_names_with_a_did_you_mean_hint(app: Flowq) -> None:
    typo = add.name[:-1]  # ...tasks.ad
    c = add.s(1, 1) | signature(typo, (1,))
    assert message(app, c) == (f"invalid workflow: chain[1] ({typo}): task {typo!r} is not "
                               f"registered (did you mean {add.name!r}?)")


def test_unknown_names_without_anything_close_have_no_hint(app: Flowq) -> None:
    assert problems(app, signature("zz.zz")) == [
        ("task (zz.zz)", "task 'zz.zz' is not registered")]


def test_the_path_names_the_node_deep_inside_the_canvas(app: Flowq) -> None:
    header = [add.s(i) for i in range(5)] + [add.s(1, 2)]
    c = chain(add.s(1, 1), add.s(1), chord(header, tsum.s()))
    assert message(app, c) == (
        f"invalid workflow: chain[2].chord.header[5] ({add.name}): "
        f"{add.name}{add.call_signature} cannot be called with the parent's result + "
        f"2 arguments: too many positional arguments")


def test_arity_counts_the_parents_result(app: Flowq) -> None:
    assert problems(app, add.s(1, 1) | noop.s()) == [
        (f"chain[1] ({noop.name})",
         (f"{noop.name}{noop.call_signature} cannot be called with the parent's result: "
         f"too many positional arguments"))]
    # immutable: no parent's result, so noop.si() is fine
    app.validate(add.s(1, 1) | noop.si())


def test_arity_of_a_first_step_counts_only_its_own_arguments(app: Flowq) -> None:
    assert problems(app, add.s(1)) == [
        (f"task ({add.name})",
         (f"{add.name}{add.call_signature} cannot be called with 1 argument: "
         f"missing a required argument: 'y'"))]
    # ... unless partial arguments are given to the whole workflow
    app.compile(add.s(1), args=(2,), strict=True)


def test_arity_mentions_keywords(app: Flowq) -> None:
    assert problems(app, add.s(1, 1) | kw_only.s(y=1)) == [
        (f"chain[1] ({kw_only.name})",
         (f"{kw_only.name}{kw_only.call_signature} cannot be called with the parent's result"
         f" + keywords y: too many positional arguments"))]


def test_bound_tasks_do_not_count_self(app: Flowq) -> None:
    app.validate(whoami.s())
    app.validate(add.s(1, 1) | whoami.s())


def test_an_errback_receives_the_failed_tasks_id(app: Flowq) -> None:
    app.validate(add.s(1, 1).on_error(errback.s()))
    assert problems(app, add.s(1, 1).on_error(add.s())) == [
        (f"task.link_error[0] ({add.name})",
         (f"{add.name}{add.call_signature} cannot be called with the failed task's id: "
         f"missing a required argument: 'y'"))]
    assert problems(app, add.s(1, 1), link_error=noop.s()) == [
        (f"task.link_error[0] ({noop.name})",
         (f"{noop.name}{noop.call_signature} cannot be called with the failed task's id: "
         f"too many positional arguments"))]


def test_a_fanout_task_receives_one_item(app: Flowq) -> None:
    app.validate(numbers.s(3) | fanout(process.s()))
    assert problems(app, numbers.s(3) | fanout(process.s(1, 2))) == [
        (f"chain[1].fanout ({process.name})",
         (f"{process.name}{process.call_signature} cannot be called with one item of the list"
         f" + 2 arguments: too many positional arguments"))]


def test_a_chord_without_a_body(app: Flowq) -> None:
    assert message(app, chord([add.s(1, 1)])) == (
        "invalid workflow: chord: chord has no body; give one with chord(header, body) or "
        "chord(header)(body)")
    assert problems(app, add.s(1, 1) | chord([add.s(1)])) == [
        ("chain[1]", ("chord has no body; give one with chord(header, body) or "
                     "chord(header)(body)"))]


@pytest.mark.parametrize(("options", "problem"), [
    ({"queue": 5}, "option 'queue' must be a queue name, got 5"),
    ({"priority": "high"}, ("option 'priority' must be an int from 0 to 255 (0-9 is portable), "
                           "got 'high'")),
    ({"priority": True}, ("option 'priority' must be an int from 0 to 255 (0-9 is portable), "
                         "got True")),
    ({"countdown": -1}, "option 'countdown' must be seconds >= 0, got -1"),
    ({"time_limit": "10"}, "option 'time_limit' must be seconds >= 0, got '10'"),
    ({"expires": "next tuesday"}, ("option 'expires' must be seconds, a datetime or an "
                                   "ISO 8601 string, got 'next tuesday'")),
    ({"ignore_result": "yes"}, "option 'ignore_result' must be True or False, got 'yes'"),
    ({"retry": 1}, ("option 'retry' must be True or False (retry publishing if the broker is "
                    "unreachable), got 1")),
    ({"routing_key": 5}, "option 'routing_key' must be a routing key (a string), got 5"),
    ({"exchange": None}, ("option 'exchange' must be an exchange name (a string; '' is the "
                          "default exchange), got None")),
    ({"headers": {"x": {1, 2}}}, ("option 'headers' must be an object of string keys to JSON "
                                  "values, got {'x': frozenset({1, 2})}")),
    ({"headers": "x"}, ("option 'headers' must be an object of string keys to JSON values, "
                        "got 'x'")),
    ({"retry_policy": {"max_retries": -1}}, (
        "option 'retry_policy' must be an object with some of max_retries (int or None), "
        "interval_start, interval_step, interval_max (seconds >= 0), got {'max_retries': -1}")),
    ({"retry_policy": {"interval": 1}}, (
        "option 'retry_policy' must be an object with some of max_retries (int or None), "
        "interval_start, interval_step, interval_max (seconds >= 0), got {'interval': 1}")),
    ({"ignore_reslt": True}, "unknown option 'ignore_reslt' (did you mean 'ignore_result'?)"),
    ({"queu": "q"}, "unknown option 'queu' (did you mean 'queue'?)"),
    ({"xyzzy": 1}, "unknown option 'xyzzy'"),
    ({"soft_time_limit": 10, "time_limit": 5},
     "soft_time_limit (10) is greater than time_limit (5)"),
])
def test_options_of_the_wrong_type_or_unknown(app: Flowq, options, problem) -> None:
    assert problems(app, add.s(1, 1).set(**options)) == [(f"task ({add.name})", problem)]


def test_options_of_a_composite_are_checked_on_every_node_they_reach(app: Flowq) -> None:
    c = group(add.s(1, 1), add.s(2, 2), priority=300)
    wanted = "option 'priority' must be an int from 0 to 255 (0-9 is portable), got 300"
    assert problems(app, c) == [(f"group[0] ({add.name})", wanted),
                                (f"group[1] ({add.name})", wanted)]


def test_every_problem_is_reported_at_once(app: Flowq) -> None:
    c = chain(add.s(1, 1).set(queu="q"), signature("nope.nope"), add.s(1, 2))
    assert message(app, c) == (
        f"invalid workflow (3 problems): chain[0] ({add.name}): unknown option 'queu' (did you"
        f" mean 'queue'?); chain[1] (nope.nope): task 'nope.nope' is not registered; "
        f"chain[2] ({add.name}): {add.name}{add.call_signature} cannot be called with the "
        f"parent's result + 2 arguments: too many positional arguments")


def test_explicit_task_ids_must_be_unique(app: Flowq) -> None:
    c = group(add.s(1, 1).set(task_id="x"), add.s(2, 2).set(task_id="x"))
    assert problems(app, c) == [
        ("group[1]", "task id 'x' is already the id of group[0]; every node needs its own")]
    c = chain(add.s(1, 1).set(task_id="a"), add.s(2).set(task_id="a"))
    assert problems(app, c) == [
        ("chain[1]", "task id 'a' is already the id of chain[0]; every node needs its own")]


# -- on send: the same checks, except that unknown task names are allowed -----------------------


def test_send_allows_task_names_this_app_does_not_know(app: Flowq) -> None:
    result = signature("elsewhere.task", (1,)).apply_async()  # memory:// broker
    assert result.id
    result = app.send_task("elsewhere.task", args=[1])
    assert result.id


def test_send_rejects_bad_options_and_arity_before_sending(app: Flowq) -> None:
    with pytest.raises(InvalidWorkflow, match=r"^invalid workflow: task \(.*\.add\): unknown "
                                              r"option 'queu' \(did you mean 'queue'\?\)$"):
        add.s(1, 1).apply_async(queu="x")
    with pytest.raises(InvalidWorkflow, match=r"chain\[1\] \(.*\.add\): .* cannot be called "
                                              r"with the parent's result \+ 2 arguments"):
        (add.s(1, 1) | add.s(1, 2)).apply_async()
    with pytest.raises(InvalidWorkflow, match=r"chord has no body"):
        chord([add.s(1, 1)]).apply_async()


def test_apply_validates_too(app: Flowq) -> None:
    with pytest.raises(InvalidWorkflow, match=r"soft_time_limit \(10\) is greater than "
                                              r"time_limit \(5\)"):
        add.s(1, 1).apply(soft_time_limit=10, time_limit=5)
    assert add.s(1, 1).apply(queue="q").get(timeout=5) == 2
