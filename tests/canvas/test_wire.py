"""The wire format: round trips, size, and rejection of anything malformed (naming the field)."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest

from flowq import chain, chord, group
from flowq.canvas import compile_workflow, fanout, wire
from flowq.canvas.dag import Workflow
from flowq.canvas.frozen import thaw
from flowq.exceptions import MalformedCanvas

from .tasks import add, errback, ident, mul, numbers, process, tsum

KIB = 1024

SHAPES = [
    pytest.param(lambda: add.s(1, 1), id="task"),
    pytest.param(lambda: add.s(1, 1) | add.s(2) | mul.s(3), id="chain"),
    pytest.param(lambda: group(add.s(i, i) for i in range(4)), id="group"),
    pytest.param(lambda: group([]), id="empty-group"),
    pytest.param(lambda: chord([add.s(1, 1), add.s(2, 2)], tsum.s()), id="chord"),
    pytest.param(lambda: chord([], tsum.s()), id="empty-chord"),
    pytest.param(lambda: add.s(1, 1) | chord([add.s(1), add.si(5, 5)], tsum.s()) | add.s(1),
                 id="chord-in-chain"),
    pytest.param(lambda: group(group(add.s(1, 1), add.s(2, 2)), add.s(1, 1) | add.s(1)),
                 id="nested-groups"),
    pytest.param(lambda: chord([chord([add.s(1, 1)], tsum.s()), add.s(2, 2)],
                               group(tsum.s(), tsum.s() | add.s(1))), id="chord-in-chord"),
    pytest.param(lambda: numbers.s(3) | fanout(process.s(factor=2)) | tsum.s(), id="fanout"),
    pytest.param(lambda: fanout(process.s()).clone(([1, 2, 3],)), id="fanout-with-items"),
    pytest.param(lambda: chain(add.s(1, 1).set(queue="a", priority=3),
                               add.s(2).set(task_id="named", countdown=1.5),
                               ident.s(x={"k": [1, None, "s"]}), queue="q"), id="options"),
    pytest.param(lambda: (add.s(1, 1) | (add.s(1) | add.s(2)).on_error(errback.s("in")))
                 .on_error(errback.s()).link(add.s(100)), id="scopes-and-links"),
    pytest.param(lambda: group(ident.s(x=1), ident.s(x=True), ident.s(x=1.0), ident.s(x="1")),
                 id="equal-but-different-types"),
    pytest.param(lambda: group(*[ident.s([1, {"k": None}])] * 3, ident.s([1, {"k": None}])),
                 id="shared-args"),
    pytest.param(lambda: group(ident.s(1), ident.s(True), ident.s(1.0), ident.s(1), ident.s(True),
                               ident.s([1]), ident.s([True])), id="shared-args-of-equal-values"),
    pytest.param(lambda: group(ident.s(i).on_error(errback.s("note", [1, 2])) for i in range(3))
                 .link(ident.s()), id="shared-errbacks"),
]


def roundtrip(workflow: Workflow) -> Workflow:
    return wire.loads(wire.dumps(workflow))


@pytest.mark.parametrize("build", SHAPES)
def test_decode_of_encode_is_the_same_workflow(build) -> None:
    workflow = compile_workflow(build())
    assert wire.decode(wire.encode(workflow)) == workflow
    assert roundtrip(workflow) == workflow
    # and the same bytes again: nothing is lost or changed in type (True is not 1)
    assert wire.dumps(roundtrip(workflow)) == wire.dumps(workflow)
    assert roundtrip(workflow).ids() == workflow.ids()


CELERY_OPTIONS = {"routing_key": "rk", "exchange": "", "headers": {"h": [1, {"a": None}]},
                  "ignore_result": True, "retry": False,
                  "retry_policy": {"max_retries": None, "interval_start": 0, "interval_step": 0.5,
                                   "interval_max": 3}}


def test_celerys_call_options_are_carried_to_the_nodes_and_survive_the_wire(app) -> None:
    workflow = app.validate(chain(add.s(1, 1).set(**CELERY_OPTIONS), add.s(1)),
                            routing_key="now")
    assert [thaw(node.options) for node in workflow.nodes] == [
        {**CELERY_OPTIONS, "routing_key": "now"}, {"routing_key": "now"}]
    decoded = roundtrip(workflow)
    assert decoded == workflow
    assert decoded.nodes[0].options["retry_policy"]["interval_step"] == 0.5
    assert decoded.nodes[0].options["headers"] == {"h": (1, {"a": None})}


def test_values_equal_in_python_keep_their_json_type() -> None:
    workflow = compile_workflow(group(ident.s(x=1), ident.s(x=True), ident.s(x=1.0)))
    decoded = roundtrip(workflow)
    assert [type(node.kwargs["x"]) for node in decoded.nodes[:3]] == [int, bool, float]


def test_datetimes_travel_as_iso_8601_strings() -> None:
    # the one conversion the format makes: a datetime comes back as its ISO string, which
    # every consumer of eta/expires accepts (naive means UTC either way)
    when = datetime.datetime(2030, 1, 2, 3, 4, 5)
    workflow = compile_workflow(add.s(1, 1).set(eta=when))
    decoded = roundtrip(workflow)
    assert decoded.nodes[0].options == {"eta": "2030-01-02T03:04:05"}
    assert wire.dumps(decoded) == wire.dumps(workflow)
    assert roundtrip(decoded) == decoded


def test_the_encoding_is_flat_and_tables_intern_repeats() -> None:
    workflow = compile_workflow(chain(add.s(1, 1).set(queue="q"), add.s(2).set(queue="q"),
                                      tsum.s()), seed="s")
    doc = wire.encode(workflow)
    assert doc == {"v": 1, "seed": "s", "out": 2,
                   "names": [add.name, tsum.name], "kw": [], "opts": [{"queue": "q"}],
                   "nodes": [[0, 0, [1, 1], 0, -1, 0], [0, 0, [2], 1, -1, 0], [0, 1, [], 1]]}


def test_argument_lists_several_nodes_have_are_written_once() -> None:
    workflow = compile_workflow(group(ident.s([7, 7]), ident.s([7, 7]), ident.s(8)), seed="s")
    doc = wire.encode(workflow)
    assert doc["args"] == [[[7, 7]]] and doc["crit"] == ["args"]
    assert [row[2] for row in doc["nodes"][:3]] == [0, 0, [8]]
    decoded = wire.decode(doc)
    assert decoded == workflow
    assert decoded.nodes[0].args is decoded.nodes[1].args  # one value in memory too


def test_a_document_without_shared_arguments_has_no_args_table() -> None:
    doc = wire.encode(compile_workflow(chain(add.s(1, 1), add.s(2)), seed="s"))
    assert "args" not in doc and "crit" not in doc  # readable by every version-1 reader


def test_a_reader_must_know_the_args_table_when_it_is_used() -> None:
    doc = wire.encode(compile_workflow(group(ident.s([1]), ident.s([1]))))
    doc["crit"].append("args_v2")
    assert rejects(doc) == "workflow.crit: required field 'args_v2' is not understood by this flowq"


def test_contiguous_join_members_are_a_range_row() -> None:
    doc = wire.encode(compile_workflow(chord([add.s(1, 1), add.s(2, 2)], tsum.s()), seed="s"))
    assert doc["nodes"][2] == [3, 0, 2]
    c = group(add.s(1, 1) | add.s(1), add.s(2, 2) | add.s(2))
    doc = wire.encode(compile_workflow(c, seed="s"))
    assert doc["nodes"][4] == [1, [1, 3]]


# -- size -----------------------------------------------------------------------------------------


def test_a_chain_of_1000_steps_encodes_under_32_kib() -> None:
    c = chain(add.s(0, 0), *(add.s(i) for i in range(999)))
    assert len(wire.dumps(compile_workflow(c)).encode()) < 32 * KIB


def test_a_chord_of_10000_header_tasks_encodes_under_400_kib() -> None:
    c = chord([add.s(i, i) for i in range(10_000)], tsum.s())
    assert len(wire.dumps(compile_workflow(c)).encode()) < 400 * KIB


def size(canvas: Any) -> int:
    return len(wire.dumps(compile_workflow(canvas)).encode())


PER_MEMBER = 64  # a few rows, a scope and an explicit id at most, whatever the arguments


def test_a_group_of_one_signature_repeated_is_about_one_copy() -> None:
    member = ident.s(list(range(200)))
    one = size(group(member))
    assert size(group(*[member] * 100)) < 2 * one + 100 * PER_MEMBER


def test_parts_sharing_one_errback_carry_it_about_once() -> None:
    shared = errback.s(list(range(200)))
    one = size(group(ident.s(0).link_error(shared)))
    many = size(group(ident.s(i).link_error(shared) for i in range(50)))
    assert many < 2 * one + 50 * PER_MEMBER


def test_equal_argument_lists_built_separately_are_shared_too() -> None:
    one = size(group(ident.s(list(range(200)))))
    many = size(group(ident.s(list(range(200))) for _ in range(100)))
    assert many < 2 * one + 100 * PER_MEMBER


# -- malformed input ------------------------------------------------------------------------------

GOOD = wire.encode(compile_workflow(
    chain(add.s(1, 1), chord([add.s(1), add.s(2)], tsum.s()).set(queue="q"), ident.s(x=1))
    .on_error(errback.s()), seed="seed"))
# nodes: 0 add | 1,2 header | 3 join [3, 1, 2] | 4 tsum | 5 ident | 6 errback (deferred)


def test_the_reference_document() -> None:
    assert GOOD["nodes"][3] == [3, 1, 2]
    assert GOOD["scopes"] == [[0, 6, [6]]]
    assert wire.decode(GOOD).nodes[6].deferred


def broken(change) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    change(doc)
    return doc


def rejects(doc: Any, **kwargs: Any) -> str:
    with pytest.raises(MalformedCanvas) as info:
        wire.decode(doc, **kwargs)
    return str(info.value)


def set_row(position: int, row: Any):
    return lambda doc: doc["nodes"].__setitem__(position, row)


@pytest.mark.parametrize(("change", "error"), [
    # unknown node kinds
    (set_row(0, [9, 0, [1, 1]]), "workflow.nodes[0][0]: unknown node kind 9"),
    (set_row(0, ["task", 0, [1, 1]]), "workflow.nodes[0][0]: unknown node kind 'task'"),
    (set_row(0, [[0], 0, [1, 1]]), "workflow.nodes[0][0]: unknown node kind [0]"),
    (set_row(0, [True, 0, [1, 1]]), "workflow.nodes[0][0]: unknown node kind True"),
    (set_row(0, []), "workflow.nodes[0]: empty row"),
    (set_row(0, "row"), "workflow.nodes[0]: expected a list, got str"),
    # bad input index: a forward reference (negative back) or pointing before the start
    (set_row(4, [0, 1, [], -1]), "workflow.nodes[4][3]: -1 is out of range 0..4"),
    (set_row(4, [0, 1, [], 5]), "workflow.nodes[4][3]: 5 is out of range 0..4"),
    # joins: members must come before the join (no cycles), once, and in one join only
    (set_row(3, [1, [1, 3]]), "workflow.nodes[3][1]: 3 is out of range 0..2"),
    (set_row(3, [1, [1, 4]]), "workflow.nodes[3][1]: 4 is out of range 0..2"),
    (set_row(3, [3, 1, 3]), "workflow.nodes[3][2]: 3 is out of range 0..2"),
    (set_row(3, [1, [1, 1]]), "workflow.nodes[3][1]: a join lists the same member twice"),
    (lambda d: d["nodes"].insert(4, [1, [0, 1]]),
     "workflow.nodes[4][1]: node 1 is already a member of another join"),
    (set_row(3, [3, 1]), "workflow.nodes[3]: a range join is [3, start, count(, flags)]"),
    (set_row(3, [1, [1, 2], 0, 0]), "workflow.nodes[3]: a join is [1, members(, flags)]"),
    (set_row(3, [1, [1, 2], 8]), "workflow.nodes[3][flags]: 8 is out of range 0..7"),
    (set_row(3, [1, [1, 2], 4]), "workflow.nodes[3][1]: a streamed join lists no members"),
    # wrong types inside a task row
    (set_row(0, [0, "0", [1, 1]]), "workflow.nodes[0][1]: expected an integer, got str"),
    (set_row(0, [0, 7, [1, 1]]), "workflow.nodes[0][1]: 7 is out of range 0..3"),
    (set_row(0, [0, 0, "1, 1"]), ("workflow.nodes[0][2]: expected a list or an index into args, "
                                  "got str")),
    (set_row(0, [0, 0, True]), ("workflow.nodes[0][2]: expected a list or an index into args, "
                                "got bool")),
    (set_row(0, [0, 0, 0]), "workflow.nodes[0][2]: 0 is out of range 0..-1"),
    (set_row(0, [0, 0, [1, 1], 0, 5]), "workflow.nodes[0][4]: 5 is out of range -1..0"),
    (set_row(0, [0, 0, [1, 1], 0, -1.0]), "workflow.nodes[0][4]: expected an integer, got float"),
    (set_row(0, [0, 0, [1, 1], 0, -1, 9]), "workflow.nodes[0][5]: 9 is out of range -1..0"),
    (set_row(0, [0, 0, [1, 1], 0, -1, True]), "workflow.nodes[0][5]: expected an integer, got bool"),
    (set_row(0, [0, 0, [1, 1], False]), "workflow.nodes[0][3]: expected an integer, got bool"),
    (set_row(0, [0, True, [1, 1]]), "workflow.nodes[0][1]: expected an integer, got bool"),
    (set_row(3, [3, True, 2]), "workflow.nodes[3][1]: expected an integer, got bool"),
    (set_row(3, [1, [True, 2]]), "workflow.nodes[3][1]: expected an integer, got bool"),
    (set_row(3, [3, 1, 2, True]), "workflow.nodes[3][flags]: expected an integer, got bool"),
    (set_row(0, [0, 0, [1, 1], 0, -1, -1, 4]), "workflow.nodes[0][6]: 4 is out of range 0..3"),
    (set_row(0, [0, 0, [1, 1], 0, -1, -1, 0, 1]), "workflow.nodes[0]: too many fields (8)"),
    (set_row(0, [0, 0, [1, 1], 0.0]), "workflow.nodes[0][3]: expected an integer, got float"),
    # tables
    (lambda d: d.__setitem__("names", [add.name, 3, tsum.name, errback.name]),
     "workflow.names: every task name must be a non-empty string"),
    (lambda d: d.__setitem__("kw", [["x", 1]]), ("workflow.kw[0]: expected an object with string "
                                                "keys")),
    (lambda d: d.__setitem__("opts", {"queue": "q"}), "workflow.opts: expected a list, got dict"),
    (lambda d: d.__setitem__("args", [[1], "2"]), "workflow.args[1]: expected a list, got str"),
    # top-level fields
    (lambda d: d.__setitem__("out", 99), "workflow.out: 99 is out of range 0..6"),
    (lambda d: d.__setitem__("out", "4"), "workflow.out: expected an integer, got str"),
    (lambda d: d.__setitem__("out", True), "workflow.out: expected an integer, got bool"),
    (lambda d: d.__setitem__("scopes", [[False, 6, [6]]]), ("workflow.scopes[0][0]: expected an "
                                                           "integer, got bool")),
    (lambda d: d.__setitem__("seed", ""), "workflow.seed: expected a non-empty string"),
    (lambda d: d.__setitem__("nodes", []), "workflow.nodes: a workflow has at least one node"),
    (lambda d: d.__setitem__("ids", {"0": "x"}), ("workflow.ids['0']: node 0's id is the seed; it "
                                                 "is not listed")),
    (lambda d: d.__setitem__("ids", {"x": "y"}), "workflow.ids['x']: keys are node positions"),
    (lambda d: d.__setitem__("ids", {1: "y"}), "workflow.ids[1]: keys are node positions"),
    (lambda d: d.__setitem__("ids", {"²": "y"}), "workflow.ids['²']: keys are node positions"),
    (lambda d: d.__setitem__("ids", {"9": "y"}), "workflow.ids['9']: 9 is out of range 0..6"),
    (lambda d: d.__setitem__("ids", {"1": "y", "2": "y"}),
     "workflow.ids['2']: task id 'y' is already the id of node 1"),
    (lambda d: d.__setitem__("ids", {"3": "seed"}),
     "workflow.ids['3']: task id 'seed' is already the id of node 0 (the seed)"),
    (lambda d: d.__setitem__("ids", {"03": "y"}), "workflow.ids['03']: keys are node positions"),
    (lambda d: d.__setitem__("ids", {"\u0663": "y"}),  # ARABIC-INDIC DIGIT THREE
     "workflow.ids['\u0663']: keys are node positions"),
    (lambda d: d.__setitem__("ids", []), "workflow.ids: expected an object, got list"),
    (lambda d: d.__setitem__("scopes", [[0, 6]]), ("workflow.scopes[0]: a scope is [lo, hi, "
                                                  "errbacks]")),
    (lambda d: d.__setitem__("scopes", [[5, 2, [6]]]), ("workflow.scopes[0][1]: 2 is out of "
                                                       "range 5..7")),
    (lambda d: d.__setitem__("scopes", [[0, 6, [5]]]), ("workflow.scopes[0][2]: errback node 5 "
                                                       "is not marked deferred")),
])
def test_malformed_documents_are_rejected_naming_the_field(change, error: str) -> None:
    assert rejects(broken(change)) == error


@pytest.mark.parametrize("field", ["seed", "out", "names", "nodes"])
def test_missing_required_fields_are_named(field: str) -> None:
    assert rejects(broken(lambda d: d.pop(field))).startswith(f"workflow.{field}: ")


def test_missing_version() -> None:
    assert rejects(broken(lambda d: d.pop("v"))) == ("workflow.v: missing (this flowq reads "
                                                     "version 1)")


@pytest.mark.parametrize("version", [True, 1.0, "1"])
def test_a_version_equal_to_1_in_python_but_not_the_int_1_is_rejected(version: Any) -> None:
    assert rejects(broken(lambda d: d.__setitem__("v", version))) == (
        f"workflow.v: version {version!r} is not supported (this flowq reads version 1)")


def test_a_future_version_is_rejected() -> None:
    assert rejects(broken(lambda d: d.__setitem__("v", 2))) == (
        "workflow.v: version 2 is not supported (this flowq reads version 1)")


def test_an_unknown_optional_field_is_ignored() -> None:
    doc = broken(lambda d: d.__setitem__("hints", {"fast": True}))
    assert wire.decode(doc) == wire.decode(GOOD)


def test_an_unknown_field_listed_as_critical_is_rejected() -> None:
    doc = broken(lambda d: d.update(hints={"fast": True}, crit=["hints"]))
    assert rejects(doc) == ("workflow.crit: required field 'hints' is not understood by this "
                            "flowq")
    assert rejects(broken(lambda d: d.__setitem__("crit", [["hints"]]))) == (
        "workflow.crit: required field ['hints'] is not understood by this flowq")
    # a known field may be listed as critical
    assert wire.decode(broken(lambda d: d.__setitem__("crit", ["scopes"]))) == wire.decode(GOOD)


def test_more_nodes_than_max_nodes_are_rejected() -> None:
    assert rejects(GOOD, max_nodes=6) == "workflow.nodes: 7 nodes is over the limit of 6"
    assert len(wire.decode(GOOD, max_nodes=7)) == 7


@pytest.mark.parametrize("doc", [None, [], "text", 1])
def test_not_an_object(doc: Any) -> None:
    assert rejects(doc) == f"workflow: expected an object, got {type(doc).__name__}"


def test_truncated_text_is_rejected() -> None:
    text = wire.dumps(compile_workflow(chain(add.s(1, 1), add.s(2))))
    for cut in (1, len(text) // 2, len(text) - 1):
        with pytest.raises(MalformedCanvas, match=r"^workflow: not valid JSON"):
            wire.loads(text[:cut])


def test_values_nested_too_deeply_are_rejected_not_a_recursion_error() -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    doc = broken(lambda d: d["nodes"].__setitem__(0, [0, 0, [nested(5000)]]))
    assert rejects(doc) == "workflow: values nested too deeply"
    # deep enough to break freezing, shallow enough for the JSON parser
    doc = broken(lambda d: d["nodes"].__setitem__(0, [0, 0, [nested(900)]]))
    with pytest.raises(MalformedCanvas, match=r"^workflow: values nested too deeply$"):
        wire.loads(json.dumps(doc))


def test_a_streamed_join_round_trips_with_its_flag(app: Flowq) -> None:
    streamed = app.compile(chord((add.s(i, i) for i in range(3)), tsum.s()))
    join = streamed.nodes[0]
    assert join.kind == "join" and join.streamed and join.members == ()
    assert wire.loads(wire.dumps(streamed)) == streamed
    assert wire.encode(streamed)["nodes"][0] == [1, [], 4]
