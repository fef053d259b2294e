"""Stamping (``canvas.stamp``, ``StampingVisitor``): which parts get which stamps, in what
order visitors are called, the errors, and how stamps travel (options, the DAG, the wire
format, message headers, ``self.request``). Real workers: tests/integration/test_stamping.py.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest

from flowq import Signature, chain, chord, fanout, group
from flowq.canvas import Canvas, wire
from flowq.canvas.dag import compile_workflow
from flowq.canvas.dicts import from_dict, to_dict
from flowq.canvas.stamping import StampingVisitor
from flowq.exceptions import InvalidWorkflow, MalformedMessage
from flowq.runtime.eager import EagerRuntime
from flowq.runtime.message import parse
from tests.canvas.tasks import add, app, errback, ident, mul, numbers, process, tsum


@app.task(bind=True)
def stamps_seen(self: Any, *values: Any) -> Any:
    """The stamps this run sees, with its stamped_headers."""
    return [dict(self.request.stamps), sorted(self.request.stamped_headers)]


def signatures(canvas: Canvas) -> Iterable[Signature]:
    """Every signature, links and errbacks included (``Canvas.signatures`` skips those)."""
    stack = [canvas]
    while stack:
        part = stack.pop()
        for name in ("link", "link_error"):
            stack.extend(part.options.get(name, ()))
        if isinstance(part, Signature):
            yield part
        else:
            stack.extend(part.children())


def stamps_of(sig: Signature) -> dict[str, Any]:
    return {name: sig.options[name] for name in sig.options.get("stamped_headers", ())}


WORKFLOW = chain(add.s(1, 1), group(add.s(1), mul.s(2).on_error(errback.s())),
                 chord([ident.s(), ident.s()], tsum.s()).link(ident.s()),
                 numbers.si(2), fanout(process.s())).on_error(errback.s())


def test_stamp_returns_a_new_canvas_and_leaves_the_old_one_alone():
    sig = add.s(1, 2)
    stamped = sig.stamp(run="r1")
    assert stamped is not sig and sig.options == {}
    assert dict(stamped.options) == {"run": "r1", "stamped_headers": ("run",)}
    assert stamped.task == sig.task and stamped.args == sig.args


def test_every_signature_of_every_shape_gets_the_stamps():
    stamped = WORKFLOW.stamp(run="r1", team="data")
    found = list(signatures(stamped))
    assert len(found) == len(list(signatures(WORKFLOW))) == 11
    assert all(stamps_of(sig) == {"run": "r1", "team": "data"} for sig in found)


class Recording(StampingVisitor):
    """Writes down every call; numbers each signature."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def _note(self, hook: str, part: Any, headers: dict[str, Any]) -> None:
        self.calls.append(f"{hook}:{getattr(part, 'task', type(part).__name__.lower())}")
        assert headers["stamped_headers"] == [k for k in headers if k not in (
            "stamped_headers", "queue")]

    def on_signature(self, sig, **headers):
        self._note("sig", sig, headers)
        return {"n": len([c for c in self.calls if c.startswith("sig:")])}

    def on_chain_start(self, chain, **headers):
        self._note("chain_start", chain, headers)
        return {}

    def on_chain_end(self, chain, **headers):
        self._note("chain_end", chain, headers)

    def on_group_start(self, group, **headers):
        self._note("group_start", group, headers)
        return {"in_group": True}

    def on_group_end(self, group, **headers):
        self._note("group_end", group, headers)

    def on_chord_body(self, chord, **headers):
        self._note("body", chord, headers)
        return {"in_body": True}

    def on_callback(self, callback, **headers):
        self._note("callback", callback, headers)
        return {"callback": True}

    def on_errback(self, errback, **headers):
        self._note("errback", errback, headers)
        return {"errback": True}


def test_visitor_methods_are_called_in_celerys_order():
    visitor = Recording()
    workflow = chain(add.s(1, 1), chord([ident.s()], tsum.s()),
                     group(add.s(1), mul.s(2))).on_error(errback.s())
    workflow = workflow.stamp(visitor=visitor)
    short = [call.replace("tests.canvas.tasks.", "") for call in visitor.calls]
    assert short == [
        "chain_start:chain", "errback:errback", "sig:errback",  # a part's links first
        "sig:add",
        # the default chord header methods call the group ones with the header
        "group_start:group", "sig:ident", "group_end:group",
        "body:chord", "sig:tsum",
        "group_start:group", "sig:add", "sig:mul", "group_end:group",
        "chain_end:chain"]


def test_stamps_flow_down_and_a_visitor_adds_its_own():
    stamped = chord([add.s(1, 1)], tsum.s().link(ident.s())).stamp(visitor=Recording(),
                                                                   run="r")
    header = stamped.header.tasks[0]
    body = stamped.body
    callback = body.options["link"][0]
    assert stamps_of(header) == {"run": "r", "in_group": True, "n": 1}
    assert stamps_of(body) == {"run": "r", "in_group": True, "in_body": True, "n": 3}
    # a link gets the stamps from above and on_callback's, not the linked signature's own
    assert stamps_of(callback) == {"run": "r", "in_group": True, "in_body": True,
                                   "callback": True, "n": 2}


def test_keys_a_visitor_does_not_list_in_stamped_headers_are_call_options():
    class Routing(StampingVisitor):
        def on_signature(self, sig, **headers):
            return {"tenant": "acme", "queue": "acme-tasks", "stamped_headers": ["tenant"]}

    stamped = group(add.s(1, 1), mul.s(2, 2)).stamp(visitor=Routing())
    for sig in stamped.tasks:
        assert dict(sig.options) == {"queue": "acme-tasks", "tenant": "acme",
                                     "stamped_headers": ("tenant",)}


def test_stamping_again_replaces_or_with_append_stamps_collects():
    once = add.s(1, 1).stamp(tag="a")
    assert stamps_of(once.stamp(tag="b")) == {"tag": "b"}
    assert stamps_of(once.stamp(append_stamps=True, tag="b")) == {"tag": ("a", "b")}
    assert stamps_of(once.stamp(append_stamps=True, tag=["b", "c"], new=1)) == {
        "tag": ("a", "b", "c"), "new": 1}


@pytest.mark.parametrize("stamps, problem", [
    ({"queue": "q"}, "stamp 'queue' has the name of a call option"),
    ({"stamps": 1}, "stamp 'stamps' has the name of a call option"),
    ({"when": object()}, "stamp 'when' must be a JSON value"),
    ({"nan": float("nan")}, "stamp 'nan' must be a JSON value"),
])
def test_stamps_that_cannot_travel_are_refused(stamps, problem):
    with pytest.raises(InvalidWorkflow, match=problem):
        add.s(1, 1).stamp(**stamps)


def test_a_visitor_must_be_a_stamping_visitor_returning_dicts():
    with pytest.raises(InvalidWorkflow, match="must be a StampingVisitor"):
        add.s(1, 1).stamp(visitor=object())  # type: ignore[arg-type]

    class Wrong(StampingVisitor):
        def on_signature(self, sig, **headers):
            return ["not", "a", "dict"]

    with pytest.raises(InvalidWorkflow, match="must return a dict, got list"):
        add.s(1, 1).stamp(visitor=Wrong())


def test_stamps_survive_compiling_the_wire_format_and_dicts():
    stamped = WORKFLOW.stamp(run="r1")
    workflow = app.compile(stamped)  # validation accepts the stamp options
    tasks = [node for node in workflow.nodes if node.task]
    assert all(node.options["run"] == "r1" and node.options["stamped_headers"] == ("run",)
               for node in tasks)
    assert wire.loads(wire.dumps(workflow)) == workflow
    assert from_dict(to_dict(stamped)) == stamped


def test_call_options_with_stamps_add_to_the_signatures_own():
    workflow = compile_workflow(add.s(1, 1).stamp(a=1),
                                options={"stamped_headers": ["b"], "b": 2})
    node = workflow.nodes[0]
    assert node.options["stamped_headers"] == ("a", "b")
    assert (node.options["a"], node.options["b"]) == (1, 2)
    assert app.compile(add.s(1, 1).stamp(a=1), options={"stamped_headers": ["b"], "b": 2})


def test_a_message_carries_its_stamps_and_a_worker_parses_them():
    runtime = EagerRuntime(app)
    workflow = app.compile((add.s(1, 1) | mul.s(2)).stamp(run="r1", tags=["x", "y"]))
    runtime.advancer.start(runtime.workflows.carry(workflow), workflow.seed, None)
    [message] = runtime.publisher.pending
    assert message.headers["stamped_headers"] == ["run", "tags"]
    assert message.headers["stamps"] == {"run": "r1", "tags": ["x", "y"]}
    request = parse(message.headers, message.body, message.content_type,
                    message.content_encoding, app.accepted_content)
    assert request.stamps == {"run": "r1", "tags": ["x", "y"]}
    assert request.stamped_headers == ["run", "tags"]

    for bad in ({"stamped_headers": "run", "stamps": {}},
                {"stamped_headers": ["run"], "stamps": ["r1"]},
                {"stamped_headers": [1], "stamps": {}}):
        with pytest.raises(MalformedMessage, match="stamped_headers"):
            parse({**message.headers, **bad}, message.body, message.content_type,
                  message.content_encoding, app.accepted_content)


def test_every_task_of_an_eager_run_sees_its_stamps_in_its_request():
    workflow = chain(stamps_seen.si(), group(stamps_seen.si(), stamps_seen.si()),
                     chord([stamps_seen.si()], stamps_seen.si()))
    result = workflow.stamp(run="r1").apply()
    expected = [{"run": "r1"}, ["run"]]
    assert result.get() == expected
    assert result.parent.get() == [expected]  # the chord header
    assert stamps_seen.si().apply().get() == [{}, []]  # no stamps: empty


def test_the_golden_stamped_messages_still_carry_their_stamps():
    """The checked-in protocol-1 messages of a stamped chord: every reader must find the
    stamps in their headers (the graph itself is checked with the other golden files)."""
    import base64

    from tests.reliability import golden

    case = golden.load_cases()["protocol1-stamped"]
    for message in case["messages"]:
        request = parse(message["headers"], base64.b64decode(message["body"]),
                        message["content_type"], message["content_encoding"],
                        app.accepted_content)
        assert request.stamps == {"run": "golden-run", "tags": ["a", "b"]}


def test_a_stamp_thrown_away_warns_at_its_line_as_celery_code_would_write_it():
    """Celery's ``g.stamp(...)`` stamps ``g`` in place; here it returns the stamped copy,
    so the statement alone warns, naming the fix."""
    import warnings

    from flowq.exceptions import DiscardedSignatureWarning

    g = group(add.si(2, 2), add.si(3, 3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g.stamp(stamp="your_custom_stamp")
        g = g.stamp(stamp="your_custom_stamp")  # kept: no warning
    found = [str(w.message) for w in caught if issubclass(w.category, DiscardedSignatureWarning)]
    assert len(found) == 1
    assert found[0].endswith("so the stamps are never applied. "
                             "Write `g = g.stamp(stamp='your_custom_stamp')`")
    assert all(stamps_of(sig) == {"stamp": "your_custom_stamp"} for sig in g.tasks)


def test_a_chord_header_from_a_generator_is_stamped_member_by_member():
    taken: list[int] = []

    def parts():
        for i in range(3):
            taken.append(i)
            yield add.s(i, i)

    stamped = chord(parts(), tsum.s()).stamp(run="r1")
    assert taken == [] and stamps_of(stamped.body) == {"run": "r1"}
    runtime = EagerRuntime(app)  # the members are taken, and stamped, as they are sent
    workflow = app.compile(stamped)
    runtime.advancer.start(runtime.workflows.carry(workflow), workflow.seed, None)
    sent = [m for m in runtime.publisher.pending if m.headers["task"] == add.name]
    assert taken == [0, 1, 2] and len(sent) == 3
    assert all(m.headers["stamps"] == {"run": "r1"} for m in sent)
