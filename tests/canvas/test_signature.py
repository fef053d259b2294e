"""Signatures are immutable values: every "modifying" call returns a new one."""

from __future__ import annotations

import pytest

from flowq import Signature, chain, chord, group, signature
from flowq.canvas.frozen import FrozenDict
from flowq.exceptions import DiscardedSignatureWarning, ImmutableSignature, InvalidWorkflow

from . import tasks
from .tasks import add, errback, ident, renamed, tsum


def test_default_task_name_is_module_and_function() -> None:
    assert add.name == f"{tasks.__name__}.add"
    assert add.s().task == add.name


def test_name_argument_overrides_the_default() -> None:
    assert renamed.name == "custom.renamed"
    assert renamed.s(1).task == "custom.renamed"
    assert tasks.app.tasks["custom.renamed"] is renamed


def test_equality_and_hash_are_by_value() -> None:
    assert add.s(1, y=2) == add.s(1, y=2)
    assert hash(add.s(1, y=2)) == hash(add.s(1, y=2))
    assert add.s(1) != add.s(2)
    assert add.s(1) != add.si(1)
    assert add.s(1) != add.s(1).set(queue="q")
    assert len({add.s(1), add.s(1), add.s(2)}) == 2
    # the app a signature came from is not part of its value
    assert add.s(1) == signature(add.name, (1,))


def test_composites_compare_and_hash_by_value() -> None:
    def build() -> object:
        return chain(add.s(1, 1), group(add.s(1), add.s(2)), tsum.s())

    assert build() == build()
    assert hash(build()) == hash(build())
    assert chord([add.s(1, 1)], tsum.s()) == chord([add.s(1, 1)], tsum.s())
    assert group(add.s(1, 1)) != group(add.s(1, 2))


def test_fields_cannot_be_assigned() -> None:
    sig = add.s(1)
    with pytest.raises(ImmutableSignature, match=r"Signature\.args.*sig = sig\.replace"):
        sig.args = (2,)  # type: ignore[misc]
    with pytest.raises(ImmutableSignature, match=r"Chain\.tasks.*new chain"):
        chain(add.s(1)).tasks = ()  # type: ignore[misc]
    with pytest.raises(ImmutableSignature, match="read-only"):
        sig.kwargs["y"] = 2  # type: ignore[index]
    with pytest.raises(AttributeError):  # what assigning a read-only attribute raises
        sig.options = {}  # type: ignore[misc]


@pytest.mark.parametrize("change", [
    pytest.param(lambda s: s.clone((9,)), id="clone-args"),
    pytest.param(lambda s: s.clone(kwargs={"z": 1}), id="clone-kwargs"),
    pytest.param(lambda s: s.clone(queue="q"), id="clone-options"),
    pytest.param(lambda s: s.set(queue="q", priority=3), id="set"),
    pytest.param(lambda s: s.replace(args=(5,)), id="replace-args"),
    pytest.param(lambda s: s.replace(kwargs={"k": 1}), id="replace-kwargs"),
    pytest.param(lambda s: s.replace(options={"queue": "q"}), id="replace-options"),
    pytest.param(lambda s: s.partial((7,), {}), id="partial"),
    pytest.param(lambda s: s.link(add.s(1)), id="link"),
    pytest.param(lambda s: s.link_error(errback.s()), id="link_error"),
    pytest.param(lambda s: s.on_error(errback.s()), id="on_error"),
    pytest.param(lambda s: s.si(), id="si"),
])
def test_modifying_calls_return_a_new_value_and_leave_the_original(change) -> None:
    original = add.s(1, y=[2, 3]).set(queue="a")
    snapshot = (original.task, original.args, dict(original.kwargs), dict(original.options),
                original.immutable)
    changed = change(original)
    assert isinstance(changed, Signature)
    assert changed is not original
    assert changed != original
    assert (original.task, original.args, dict(original.kwargs), dict(original.options),
            original.immutable) == snapshot


@pytest.mark.parametrize("change", [
    pytest.param(lambda c: c.set(queue="q"), id="set"),
    pytest.param(lambda c: c.clone((1,)), id="clone"),
    pytest.param(lambda c: c.link(add.s(1)), id="link"),
    pytest.param(lambda c: c.on_error(errback.s()), id="on_error"),
])
@pytest.mark.parametrize("build", [
    pytest.param(lambda: chain(add.s(), add.s(1)), id="chain"),
    pytest.param(lambda: group(add.s(1), add.s(2)), id="group"),
    pytest.param(lambda: chord([add.s(1), add.s(2)], tsum.s()), id="chord"),
])
def test_composites_are_immutable_too(build, change) -> None:
    original = build()
    changed = change(original)
    assert changed != original
    assert original == build()


def test_link_returns_a_new_signature_instead_of_mutating() -> None:
    # Celery users write ``s.link(cb); s.delay()``; in flowq ``s`` is unchanged by that
    # (and the line warns: tests/canvas/test_discarded.py)
    s = add.s(1, 1)
    with pytest.warns(DiscardedSignatureWarning):
        s.link(add.s(10))
    assert "link" not in s.options
    s = s.link(add.s(10))
    assert s.options["link"] == (add.s(10),)
    assert s.link(add.s(20)).options["link"] == (add.s(10), add.s(20))


def test_lists_and_dicts_given_as_arguments_are_frozen_deeply() -> None:
    args = [1, [2, 3]]
    kwargs = {"x": {"deep": [4]}}
    sig = ident.s(*args, **kwargs)
    args[1].append(99)
    kwargs["x"]["deep"].append(99)
    kwargs["new"] = 1
    assert sig.args == (1, (2, 3))
    assert sig.kwargs == {"x": {"deep": (4,)}}
    assert isinstance(sig.kwargs, FrozenDict)
    hash(sig)


@pytest.mark.parametrize("make", [
    pytest.param(lambda a, k: Signature(add.name, a, k), id="Signature"),
    pytest.param(lambda a, k: signature(add.name, a, k), id="signature"),
    pytest.param(lambda a, k: add.signature(a, k), id="task.signature"),
    pytest.param(lambda a, k: add.s().clone(a, k), id="clone"),
    pytest.param(lambda a, k: add.s().partial(tuple(a), k), id="partial"),
    pytest.param(lambda a, k: add.s().replace(a, k), id="replace"),
])
def test_every_way_of_giving_arguments_freezes_them(make) -> None:
    args, kwargs = [[1]], {"y": [2]}
    sig = make(args, kwargs)
    args[0].append(3)
    kwargs["y"].append(3)
    assert sig.args == ((1,),)
    assert sig.kwargs == {"y": (2,)}
    hash(sig)


def test_options_are_frozen_deeply() -> None:
    headers = {"trace": [1]}
    sig = add.s(1).set(headers=headers)
    headers["trace"].append(2)
    assert sig.options["headers"] == {"trace": (1,)}
    hash(sig)


def test_tasks_receive_plain_lists_and_dicts() -> None:
    assert ident.s([1, (2, 3)]).apply().get(timeout=5) == [1, [2, 3]]
    assert ident.s({"a": (1,)}).apply().get(timeout=5) == {"a": [1]}


def test_si_makes_an_immutable_signature() -> None:
    assert add.si(1, 2).immutable
    assert add.s(1, 2).si() == add.si(1, 2)
    assert repr(add.si(1, 2)) == f"{add.name}.si(1, 2)"


def test_partial_arguments_are_prepended_and_kwargs_merged() -> None:
    sig = add.s(2, scale=1).clone((1,), {"scale": 3})
    assert sig.args == (1, 2)
    assert sig.kwargs == {"scale": 3}


def test_immutable_signatures_ignore_partial_arguments() -> None:
    sig = add.si(1, 2)
    assert sig.clone((5,), {"z": 1}) == sig
    assert add.si(1, 2).apply(args=(100,)).get(timeout=5) == 3


def test_set_immutable_like_celery() -> None:
    assert add.s(1).set(immutable=True) == add.si(1)
    assert add.si(1).set(immutable=False, queue="q") == add.s(1).set(queue="q")
    assert add.s(1).set_immutable(True) == add.si(1)
    assert add.s(1).set(immutable=None) == add.s(1)


def test_set_immutable_on_composites_reaches_the_steps_that_run_first() -> None:
    # like Celery: a group's members, a chord's header (not its body); a chain's first step
    assert chain(add.s(1), add.s(2)).set(immutable=True) == chain(add.si(1), add.s(2))
    assert group(add.s(1), add.s(2)).set(immutable=True) == group(add.si(1), add.si(2))
    assert chord([add.s(1)], tsum.s()).set(immutable=True) == chord([add.si(1)], tsum.s())
    assert chain(add.s(1, 1), add.s(2, 3).set(immutable=True)).apply().get(timeout=5) == 5


@pytest.mark.parametrize("change", [
    pytest.param(lambda s: s.set(link_error=5), id="set-int"),
    pytest.param(lambda s: s.set(link_error=[errback.s(), 5]), id="set-list-with-int"),
    pytest.param(lambda s: s.set(link_error="tasks.errback"), id="set-name"),
    pytest.param(lambda s: s.link_error(5), id="link_error-int"),
    pytest.param(lambda s: s.clone(link_error={"task": "x"}), id="clone-mapping"),
])
def test_link_error_that_is_not_a_signature_is_an_option_type_error(change) -> None:
    with pytest.raises(InvalidWorkflow, match=r"option 'link_error' must be a signature or a "
                                              r"list of signatures, got "):
        change(add.s(1, 1))


def test_link_of_the_wrong_type_names_link() -> None:
    with pytest.raises(InvalidWorkflow, match=r"option 'link' must be a signature or a list of "
                                              r"signatures, got 5$"):
        add.s(1, 1).set(link=5)
    with pytest.raises(InvalidWorkflow, match=r"option 'link' must be"):
        add.s(1, 1).apply_async(link=5)


def test_link_and_link_error_accept_one_signature_or_several() -> None:
    one, two = errback.s(), errback.s("x")
    assert add.s(1).set(link_error=one).options["link_error"] == (one,)
    assert add.s(1).set(link_error=[one, two]).options["link_error"] == (one, two)
    assert add.s(1).link_error(one).link_error(two) == add.s(1).set(link_error=(one, two))


def test_call_time_options_merge_over_stored_ones() -> None:
    sig = add.s(1).set(queue="a", priority=1).set(queue="b")
    assert sig.options == {"queue": "b", "priority": 1}


def test_signature_from_a_mapping_like_celery() -> None:
    sig = signature({"task": add.name, "args": [1], "kwargs": {"y": 2},
                     "options": {"queue": "q"}, "immutable": True})
    assert sig == add.si(1, y=2).set(queue="q")


def test_calling_a_signature_runs_the_function_here() -> None:
    assert add.s(1)(2) == 3
    assert tasks.RUNS["add"] == 1


def test_freeze_fixes_ids_without_changing_the_value(always_eager) -> None:
    sig = add.s(1, 1)
    handle = sig.freeze()
    assert sig == add.s(1, 1) and hash(sig) == hash(add.s(1, 1))  # still the same value
    assert sig.freeze().id == handle.id == sig.id == sig.apply().id == sig.delay().id
    derived = sig.set(queue="q")
    assert derived.id is None and derived.delay().id != handle.id  # a new value: not frozen
    named = (add.s(1, 1) | add.s(1)).freeze("named")
    assert named.id == "named" and named.parent.id != "named"


def test_a_bare_task_stands_for_its_signature() -> None:
    assert chain(add.s(1, 1), ident) == chain(add.s(1, 1), ident.s())
    assert (ident | add.s(1)) == chain(ident.s(), add.s(1))
    assert chord([add.s(1, 1)], tsum) == chord([add.s(1, 1)], tsum.s())
    assert signature(add, (1, 2)) == Signature(add, (1, 2)) == add.s(1, 2)
    assert add.s(1).link(ident).options["link"] == (ident.s(),)
