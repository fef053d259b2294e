"""Celery's in-place idioms are loud: a thrown-away derived signature warns at its line,
once, with the fix; assigning an attribute raises; normal use never warns."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from flowq import chain, chord, fanout, group, signature
from flowq.canvas.dicts import from_dict, to_dict
from flowq.exceptions import DiscardedSignatureWarning, ImmutableSignature

from .tasks import add, app, errback, ident, tsum


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        yield seen


def messages(seen: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in seen if issubclass(w.category, DiscardedSignatureWarning)]


def test_each_in_place_idiom_warns_at_its_line_with_the_fix(caught) -> None:
    sig, cb = add.s(1, 1), ident.s()
    sig.link(cb)
    sig.link_error(errback.s())
    sig.on_error(errback.s())
    sig.set(queue="fast")
    sig.set_immutable(True)
    found = messages(caught)
    assert len(found) == 5
    assert f"{__file__}:" in found[0]
    assert found[0].endswith("so the callback is never attached. Write `sig = sig.link(cb)`")
    assert found[1].endswith("the errback is never attached. Write "
                             "`sig = sig.link_error(errback.s())`")
    assert "`sig = sig.on_error(errback.s())`" in found[2]
    assert "the options are never applied. Write `sig = sig.set(queue='fast')`" in found[3]
    assert "the flag is never set. Write `sig = sig.set_immutable(True)`" in found[4]
    assert len({w.lineno for w in caught}) == 5  # each line named
    assert all(w.filename == __file__ for w in caught)


def test_every_shape_warns(caught) -> None:
    shapes = [add.s(1) | add.s(2), group(add.s(1, 1)), chord([add.s(1, 1)], tsum.s()),
              fanout(add.s(1))]
    for shape in shapes:
        shape.link_error(errback.s())
    assert len(messages(caught)) == 1  # one call site: once, however often it runs
    assert "`shape = shape.link_error(errback.s())`" in messages(caught)[0]


def test_the_warning_is_given_once_per_call_site(caught) -> None:
    sigs = [add.s(i, i) for i in range(100)]
    for s in sigs:
        s.set(queue="q")
    for s in sigs:
        s.set(queue="q")
    assert len(messages(caught)) == 2


def test_results_that_are_used_never_warn(caught) -> None:
    sig = add.s(1, 1)
    sig = sig.link(ident.s())
    linked = [s.link(ident.s()) for s in (sig, sig)]
    assert sig.set(queue="q").apply().get() == 2  # Celery's chaining: the result is used
    workflow = chain(sig.set(queue="q"), add.s(1).on_error(errback.s()))
    built = {"sig": sig.set_immutable(True)}
    assert (lambda: sig.set(priority=1))().options["priority"] == 1

    def make():
        return sig.link_error(errback.s())

    assert make() and linked and workflow and built
    assert messages(caught) == []


def test_the_interactive_prompt_shows_the_value_and_does_not_warn(caught) -> None:
    # a prompt (the REPL, doctest) prints the value of an expression statement
    code = compile("sig.link(cb)\n", "<stdin>", "single")
    exec(code, {"sig": add.s(1, 1), "cb": ident.s()})
    assert messages(caught) == []


def test_a_call_on_a_temporary_is_not_a_celery_idiom_and_does_not_warn(caught) -> None:
    add.s(1, 1).set(queue="q")  # does nothing in Celery either
    assert messages(caught) == []


def test_flowq_itself_never_warns(caught) -> None:
    # building, composing, compiling, running and converting every shape
    c = chord([add.s(i) for i in range(3)], tsum.s().on_error(errback.s()))
    workflow = (add.s(1, 1).set(queue="q") | c | group(ident.s(), ident.s())).set(countdown=0)
    assert workflow.clone(kwargs={}).set_immutable(False) is not None
    app.compile(workflow, options={"link_error": errback.s()})
    assert from_dict(to_dict(workflow)) == workflow
    assert signature(to_dict(c)) == c
    assert (add.s(1, 1) | add.s(2)).apply().get() == 4
    assert messages(caught) == []


@pytest.mark.parametrize("shape, name, fix", [
    (add.s(1), "args", "sig = sig.replace(args=...)"),
    (add.s(1), "kwargs", "sig = sig.replace(kwargs=...)"),
    (add.s(1), "options", "sig = sig.set(name=value)"),
    (add.s(1), "immutable", "sig = sig.set_immutable(True)"),
    (add.s(1) | add.s(2), "tasks", "chain(...)"),
    (group(add.s(1, 1)), "tasks", "group(...)"),
    (chord([add.s(1, 1)], tsum.s()), "body", "chord(header, body)"),
])
def test_assigning_an_attribute_raises_with_the_rewrite(shape, name, fix) -> None:
    with pytest.raises(ImmutableSignature, match="flowq signatures are immutable") as info:
        setattr(shape, name, None)
    assert fix in str(info.value)
    assert isinstance(info.value, AttributeError)


def test_changing_options_or_kwargs_in_place_raises() -> None:
    sig = add.s(1, y=2)
    with pytest.raises(ImmutableSignature, match=r"sig = sig.set\(queue='q'\)"):
        sig.options["queue"] = "q"
    with pytest.raises(ImmutableSignature, match="read-only"):
        sig.options.update(queue="q")
    with pytest.raises(ImmutableSignature, match="read-only"):
        del sig.kwargs["y"]
