"""C. Bad input, publish side and consume side (reliability-scenarios.md, family C).

Consume-side cases are raw messages put on a worker's queue with kombu, as a foreign or
broken publisher would: the worker must dead-letter each one once (``<queue>.dead``, with
an ``x-flowq-reason`` header), never run it, never loop, and keep working. The worker
runs with the decoder sentinel on (every non-JSON deserializer and ``pickle.loads`` is a
tripwire that writes to the ledger), ``workflow_max_nodes=50`` and a 64 KiB body limit.
"""

from __future__ import annotations

import base64
import copy
import datetime
import json
import logging
import os
import pickle
import re
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
import yaml

from flowq import GroupResult, chord, group, states
from flowq.canvas import wire
from flowq.exceptions import (
    BackendUnavailable,
    BrokerUnavailable,
    ChordError,
    ContentDisallowed,
    InvalidWorkflow,
    MalformedCanvas,
    MalformedMessage,
    MessageTooLarge,
    NotRegistered,
    RemoteError,
    TaskRevokedError,
)
from flowq.runtime.backends.memory import MemoryBackend
from flowq.runtime.backends.redis import RedisBackend
from flowq.runtime.message import decode_body, parse
from flowq.runtime.workflows import WorkflowStore
from tests.integration.app import app
from tests.reliability import golden
from tests.reliability.checker import Ledger, assert_total_queue
from tests.reliability.conftest import (
    FaultCluster,
    dead_letters,
    publish_raw,
    queue_size,
    ran_or_dead_lettered,
    require_servers,
    scratch_app,
    send_workflow,
    task_headers,
    task_ids,
)
from tests.reliability.fault_tasks import body, on_error, probe_pickle, step
from tests.reliability.faults import wait_for

pytestmark = pytest.mark.timeout(90)
T = 20
CONFIGS = ["redis", "amqp", "embedded"]
REASON = "x-flowq-reason"
BODY_LIMIT = 64 * 1024
WORKER_ENV = {"FLOWQ_TEST_DECODER_SENTINEL": "1", "FLOWQ_TEST_MAX_NODES": "50",
              "FLOWQ_TEST_BODY_LIMIT": str(BODY_LIMIT)}


def kind() -> str:
    return f"k-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module", params=CONFIGS)
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[FaultCluster]:
    require_servers(request.param)
    instance = FaultCluster(request.param, tmp_path_factory.mktemp(f"c-{request.param}"))
    instance.configure(app)
    instance.pool = instance.start(env=WORKER_ENV, concurrency=2)  # type: ignore[attr-defined]
    yield instance
    instance.cleanup()
    app.close()


#: Cases whose handling does not depend on the broker: the Redis configuration only.
REDIS_ONLY = pytest.mark.parametrize("shared", ["redis"], indirect=True)


@pytest.fixture
def bad(shared: FaultCluster) -> FaultCluster:
    """The module's worker, with the test process pointed at it again."""
    shared.configure(app)
    assert shared.pool.alive(), shared.pool.log()[-3000:]  # type: ignore[attr-defined]
    return shared


def reasons(messages: list[Any], key: str = "x-test-case") -> dict[str, str]:
    """The dead-letter reason of each message, by the test's own case header."""
    return {m.headers[key]: m.headers[REASON] for m in messages}


def still_works(target: FaultCluster) -> None:
    """The consumer kept running: a normal task goes through."""
    k = kind()
    result = step.apply_async((1,), {"kind": k})
    assert result.get(timeout=T) == 2
    assert_total_queue([result.id], Ledger(target, k).settle([result.id], quiet=0))


def never_ran(target: FaultCluster, ids: list[str]) -> None:
    starts = {line.split("|")[0] for line in target.ledger_list("steps:starts")}
    assert not starts & set(ids), "a rejected message was executed"


# -- C1: malformed bodies ------------------------------------------------------------------------

MALFORMED_BODIES = {
    "not-utf8": b"\xff\xfe\x00\x80garbage",
    "truncated-json": b'[[1, 2], {"add": ',
    "wrong-shape": b'{"args": [1], "kwargs": {}}',
    "args-not-a-list": b'[1, {}]',
    "kwargs-not-a-dict": b'[[1], [2]]',
    "empty": b"",
}


def test_malformed_bodies_are_dead_lettered_once(bad):
    """C1: each malformed body is dead-lettered once with its reason and never run;
    no requeue loop; the consumer carries on."""
    ids = []
    for case, payload in MALFORMED_BODIES.items():
        headers = task_headers(step.name, **{"x-test-case": case})
        ids.append(headers["id"])
        publish_raw(bad, payload, headers)
    dead = dead_letters(bad, len(MALFORMED_BODIES))
    for case, reason in reasons(dead).items():
        assert re.match(r"(MalformedMessage|ProtocolError): message body "
                        r"(does not decode|must be \[args, kwargs\])", reason), (case, reason)
    kept = {m.headers["x-test-case"]: m.body for m in dead}
    assert kept["not-utf8"] == MALFORMED_BODIES["not-utf8"]  # the original bytes, for a post-mortem
    assert queue_size(bad) == 0
    never_ran(bad, ids)
    still_works(bad)


@REDIS_ONLY
def test_dead_letter_reason_names_the_specific_error(bad):
    """C1/C5: the reason header names the typed error, wherever it was detected."""
    publish_raw(bad, b"[1, {}]", task_headers(step.name, **{"x-test-case": "body"}))
    (dead,) = dead_letters(bad, 1)
    assert dead.headers[REASON].startswith("MalformedMessage: ")


def test_rejection_log_line_is_bounded(bad):
    """C1: the log line of a rejected message shows at most ~1 KiB of it, however big."""
    headers = task_headers(step.name, shadow="h" * 30_000, **{"x-test-case": "huge"})
    publish_raw(bad, b"\xff" * 60_000, headers)
    (dead,) = dead_letters(bad, 1)
    assert len(dead.headers[REASON]) <= 1024
    line = wait_for(lambda: [ln for ln in bad.pool.log().splitlines()
                             if "rejected to" in ln and headers["id"] in ln], 5, "the log line")
    assert len(line) == 1 and len(line[0]) < 2 * 1024 + 300, len(line[0])


# -- C2: unknown task ----------------------------------------------------------------------------


@pytest.mark.parametrize("shared", ["redis", "embedded"], indirect=True)
def test_unknown_task_fails_its_waiters_and_is_dead_lettered(bad):
    """C2: a task this worker does not know is dead-lettered and its result set to a
    terminal NotRegistered failure, so ``get()`` does not hang."""
    result = app.send_task("tests.nope.missing_task", args=[1])
    with pytest.raises(NotRegistered, match="'tests.nope.missing_task' is not registered"):
        result.get(timeout=T)
    (dead,) = dead_letters(bad, 1)
    assert dead.headers["id"] == result.id
    assert dead.headers[REASON].startswith("NotRegistered: ")
    still_works(bad)


@pytest.mark.parametrize("shared", ["redis", "embedded"], indirect=True)
def test_chord_with_unknown_member_runs_its_errback_once(bad):
    """C2: a chord member naming an unknown task fails the chord: the errback runs once,
    the body never, and the known members still run and keep their results."""
    k, kb, ke = kind(), kind(), kind()
    ledger, bodies = Ledger(bad, k), Ledger(bad, kb)
    workflow, result = send_workflow(chord(
        [step.s(1, kind=k), app.signature("tests.nope.missing_task"), step.s(2, kind=k)],
        body.s(kind=kb)).on_error(on_error.s(kind=ke)))
    with pytest.raises(NotRegistered):
        result.get(timeout=T)
    errbacks = wait_for(lambda: bad.ledger_list(ke), T, "the errback")
    (dead,) = dead_letters(bad, 1)
    assert dead.headers["task"] == "tests.nope.missing_task"
    assert len(errbacks) == 1 and bad.ledger_list(ke) == errbacks
    assert bodies.starts() == []
    known = [workflow.node_id(0), workflow.node_id(2)]
    assert [app.AsyncResult(i).get(timeout=T) for i in known] == [2, 3]
    assert_total_queue(known, ledger.settle(known, quiet=0))


# -- C3: disallowed content types ------------------------------------------------------------------


class Exploit:
    """A pickle that would create a file if anything ever unpickled it."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.path}",))


def test_disallowed_content_types_never_reach_a_deserializer(bad, tmp_path):
    """C3: pickle, YAML, msgpack (only JSON is accepted) and a missing content type are
    rejected as ContentDisallowed before any deserializer runs: the worker's
    ``pickle.loads`` and non-JSON decoders are tripwires, and none fired."""
    assert probe_pickle.delay().get(timeout=T) == "sentinel"  # the tripwire is armed
    pwned = tmp_path / "pwned"
    payloads = {
        "pickle": (pickle.dumps([[Exploit(str(pwned))], {}]), "application/x-python-serialize",
                   "binary"),
        "yaml": (b"!!python/object/apply:os.system ['true']", "application/x-yaml", "utf-8"),
        "msgpack": (msgpack.packb([[1], {}]), "application/x-msgpack", "binary"),
        "missing": (b"[[1], {}]", None, None),
        "octet-stream": (b"[[1], {}]", "application/octet-stream", "binary"),
    }
    ids = []
    for case, (payload, content_type, encoding) in payloads.items():
        headers = task_headers(step.name, **{"x-test-case": case})
        ids.append(headers["id"])
        publish_raw(bad, payload, headers, content_type, encoding)
    dead = dead_letters(bad, len(payloads))
    for case, reason in reasons(dead).items():
        assert reason.startswith("ContentDisallowed: content type"), (case, reason)
    calls = [c for c in bad.ledger_list("decoders") if "fault_tasks" not in c]
    assert calls == [], f"a deserializer ran on a disallowed message: {calls}"
    assert not pwned.exists()
    never_ran(bad, ids)
    still_works(bad)


def test_yaml_body_of_a_json_message_is_not_parsed_as_yaml(bad):
    """C3: content type and body disagree (YAML bytes labelled JSON): JSON rules."""
    publish_raw(bad, yaml.safe_dump([[1], {}]).encode(),
                task_headers(step.name, **{"x-test-case": "yaml-as-json"}))
    (dead,) = dead_letters(bad, 1)
    assert "does not decode as application/json" in dead.headers[REASON]
    assert [c for c in bad.ledger_list("decoders") if "fault_tasks" not in c] == []


# -- C4: protocol and required headers -----------------------------------------------------------

BAD_HEADERS: dict[str, dict[str, Any]] = {
    "no-protocol": {"flowq": ...},
    "protocol-2": {"flowq": 2},
    "protocol-as-text": {"flowq": "1"},
    "no-id": {"id": ...},
    "no-task": {"task": ...},
    "no-root-id": {"root_id": ...},
    "empty-id": {"id": ""},
    "id-not-text": {"id": 12345},
    "negative-retries": {"retries": -1},
    "bad-timelimit": {"timelimit": "fast"},
    "item-out-of-range": {"item": [5, 2]},
    "eta-not-a-time": {"eta": "tomorrow-ish"},
    "wf-not-an-object": {"wf": "[1, 2]"},
    "wf-ref-not-a-hash": {"wf_ref": "../../etc/passwd"},
}


def test_bad_protocol_headers_are_dead_lettered(bad):
    """C4: no or an unknown protocol version, or a missing or ill-typed required header,
    is rejected (UnsupportedProtocol / MalformedMessage), never guessed."""
    for case, change in BAD_HEADERS.items():
        publish_raw(bad, b"[[1], {}]", task_headers(step.name, **{"x-test-case": case},
                                                    **change))
    publish_raw(bad, b"[[1], {}]", {"x-test-case": "no-headers"})
    dead = dead_letters(bad, len(BAD_HEADERS) + 1)
    found = reasons(dead)
    assert set(found) == {*BAD_HEADERS, "no-headers"}
    for case, reason in found.items():
        expected = ("UnsupportedProtocol" if case in ("no-protocol", "protocol-2",
                                                      "protocol-as-text", "no-headers")
                    else "MalformedMessage")
        assert reason.startswith(expected + ": "), (case, reason)
    assert queue_size(bad) == 0
    still_works(bad)


# -- C5: malformed canvas headers -------------------------------------------------------------------


def _message_for(workflow: Any, k: str, wf: Any = None) -> tuple[dict[str, Any], bytes]:
    headers = {"flowq": 1, "id": workflow.node_id(0), "task": step.name,
               "root_id": workflow.seed, "node": 0,
               "wf": wire.encode(workflow) if wf is None else wf}
    return headers, json.dumps([[1], {"kind": k}]).encode()


def _mutate(doc: dict[str, Any], case: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    rows = doc["nodes"]
    join = next(i for i, row in enumerate(rows) if row[0] in (1, 3)) if case.startswith(
        "join") else None
    if case == "unknown-node-kind":
        rows[0][0] = 9
    elif case == "join-lists-a-member-twice":
        rows[join] = [1, [0, 0]]
    elif case == "join-forward-reference":
        rows[join] = [1, [0, join + 1]]
    elif case == "join-negative-size":
        rows[join] = [3, 0, -1]
    elif case == "input-points-forward":
        rows[1][3] = -1
    elif case == "unknown-task-index":
        rows[0][1] = 7
    elif case == "crit-field-unknown":
        doc["crit"] = ["x_future"]
        doc["x_future"] = 1
    elif case == "version-2":
        doc["v"] = 2
    elif case == "two-nodes-one-id":
        doc["ids"] = {"1": doc["seed"] + "-x", "2": doc["seed"] + "-x"}
    return doc


CANVAS_CASES = ["unknown-node-kind", "join-lists-a-member-twice", "join-forward-reference",
                "join-negative-size", "input-points-forward", "unknown-task-index",
                "crit-field-unknown", "version-2", "two-nodes-one-id"]


@REDIS_ONLY
def test_malformed_canvas_headers_are_dead_lettered_before_any_side_effect(bad):
    """C5: a workflow header that does not decode, is too large, or does not match its
    message is dead-lettered before anything happens: the task never runs, no result is
    stored, nothing is published."""
    k = kind()
    sent: dict[str, list[str]] = {}
    for case in CANVAS_CASES:
        workflow = app.compile(chord([step.s(kind=k), step.s(kind=k)], step.s(kind=k)))
        headers, payload = _message_for(workflow, k, _mutate(wire.encode(workflow), case))
        headers["x-test-case"] = case
        publish_raw(bad, payload, headers)
        sent[case] = [workflow.node_id(i) for i in range(len(workflow.nodes))]
    big = app.compile(group(step.s(i, kind=k) for i in range(60)))  # over workflow_max_nodes
    headers, payload = _message_for(big, k)
    publish_raw(bad, payload, {**headers, "x-test-case": "too-many-nodes"})
    sent["too-many-nodes"] = [big.node_id(i) for i in range(len(big.nodes))]
    small = app.compile(step.s(kind=k) | step.s(kind=k))
    headers, payload = _message_for(small, k)
    publish_raw(bad, payload, {**headers, "id": str(uuid.uuid4()), "x-test-case": "id-mismatch"})
    headers, payload = _message_for(small, k)
    del headers["wf"]
    publish_raw(bad, payload, {**headers, "wf_ref": "ab" * 32, "x-test-case": "wf-ref-missing"})
    sent["id-mismatch"] = sent["wf-ref-missing"] = [small.node_id(0), small.node_id(1)]

    dead = dead_letters(bad, len(sent))
    found = reasons(dead)
    assert set(found) == set(sent)
    for case, reason in found.items():
        assert reason.startswith(("MalformedCanvas", "ProtocolError")), (case, reason)
        assert re.search(r"workflow|does not match", reason), (case, reason)
    assert "over the limit of 50" in found["too-many-nodes"]
    assert "x_future" in found["crit-field-unknown"]
    every_id = [task_id for ids in sent.values() for task_id in ids]
    assert app.backend.get_many(every_id) == [None] * len(every_id), "a result was stored"
    assert Ledger(bad, k).starts() == [] and queue_size(bad) == 0
    still_works(bad)


def test_deeply_nested_workflow_values_are_malformed_canvas():
    """C5: a nesting bomb in a workflow's values is a MalformedCanvas, not a crash."""
    with pytest.raises(MalformedCanvas, match="workflow"):
        wire.loads('{"v": 1, "seed": "s", "out": 0, "names": ["t"], "nodes": [[0, 0, '
                   + "[" * 100_000 + "]" * 100_000 + "]]}")


@REDIS_ONLY
def test_chain_step_with_impossible_arguments_is_rejected_before_running(bad):
    """C5: a chain whose second step cannot take its arguments is rejected as a whole,
    before its first step runs."""
    k = kind()
    workflow = app.compile(step.s(kind=k) | step.s(kind=k))
    doc = wire.encode(workflow)
    doc["nodes"][1][2] = list(range(9))  # step(value, add, fault, ...) takes at most 7
    headers, payload = _message_for(workflow, k, doc)
    publish_raw(bad, payload, headers)
    ran_or_dead_lettered(bad, k)
    assert Ledger(bad, k).starts() == [], "the first step ran"
    (dead,) = dead_letters(bad, 1)
    assert dead.headers[REASON].startswith(("MalformedCanvas", "ProtocolError"))


def test_workflow_header_is_checked_even_when_its_seed_was_seen(fault_cluster):
    """C5: the decoded-workflow cache must not let a malformed header through."""
    fault_cluster.start(env=WORKER_ENV, concurrency=1)  # one child: one cache
    k = kind()
    workflow = app.compile(step.s(kind=k) | step.s(kind=k))
    headers, payload = _message_for(workflow, k)
    publish_raw(fault_cluster, payload, headers)
    wait_for(lambda: len(Ledger(fault_cluster, k).ends()) >= 2, T, "the valid chain")
    k2 = kind()  # the tampered copy records under a kind of its own
    headers, payload = _message_for(workflow, k2, _mutate(wire.encode(workflow),
                                                           "unknown-node-kind"))
    publish_raw(fault_cluster, payload, {**headers, "retries": 1})
    ran_or_dead_lettered(fault_cluster, k2)
    assert Ledger(fault_cluster, k2).starts() == [], "the tampered workflow ran"
    (dead,) = dead_letters(fault_cluster, 1)
    assert "unknown node kind" in dead.headers[REASON]


# -- C6: oversized messages ----------------------------------------------------------------------------


@REDIS_ONLY
def test_oversized_headers_raise_in_the_client_and_large_workflows_go_by_reference(bad, conf):
    """C6: headers over message_header_limit raise MessageTooLarge before anything is
    sent, the connection stays usable, and with the default inline limit the same
    workflow travels by reference and runs."""
    k = kind()
    canvas = step.s(0, kind=k, token="t" * 3000)
    for i in range(30):  # distinct keyword arguments: the encoding keeps each one once
        canvas = canvas | step.s(kind=k, token=f"{i}" + "t" * 3000)
    conf.workflow_inline_limit = 10 ** 7  # force it inline: ~90 KiB of headers
    app.close()  # the runtime reads the inline limit when it is built
    with pytest.raises(MessageTooLarge, match="message_header_limit"):
        app.send(canvas)
    assert queue_size(bad) == 0
    still_works(bad)
    conf.workflow_inline_limit = 4096
    app.close()
    _, result = send_workflow(canvas)
    assert result.get(timeout=T) == 31
    ids = task_ids(result)
    assert_total_queue(ids, Ledger(bad, k).settle(ids, quiet=0.2))


@REDIS_ONLY
def test_oversized_body_raises_in_the_client_and_the_connection_survives(bad, conf):
    """C6: a body over message_body_limit raises MessageTooLarge in the client; nothing
    is sent; the next publish on the same connection works."""
    conf.message_body_limit = 256 * 1024
    with pytest.raises(MessageTooLarge, match="message_body_limit"):
        step.apply_async(("x" * 300_000,))
    assert queue_size(bad) == 0
    still_works(bad)


@REDIS_ONLY
def test_oversized_message_from_a_foreign_publisher_is_dead_lettered(bad):
    """C6: on the consume side, a body over the worker's limit goes to the DLQ unrun."""
    k = kind()
    payload = json.dumps([[1], {"kind": k, "token": "x" * (BODY_LIMIT + 1000)}]).encode()
    publish_raw(bad, payload, task_headers(step.name))
    ran_or_dead_lettered(bad, k)
    assert Ledger(bad, k).starts() == [], "the over-limit message ran"
    (dead,) = dead_letters(bad, 1)
    assert dead.headers[REASON].startswith("MessageTooLarge")


# -- C7: signatures -------------------------------------------------------------------------------


@pytest.mark.skip(reason=(
    "C7 (message signing) was not implemented when this suite was written; its scenarios "
    "(tampered body or header, content type switched to pickle, unknown key, replay, "
    "missing or garbled signature) live in tests/integration/test_signing.py"))
def test_signature_checks():
    pass


# -- C8: a poisoned result backend ---------------------------------------------------------------------


def test_poisoned_results_are_never_imported_or_called(any_backend, tmp_path):
    """C8: records written straight into the backend that name dangerous callables,
    unimported modules or non-exceptions come back as RemoteError; nothing runs, nothing
    is imported, a pickled record is refused before unpickling."""
    pwned = tmp_path / "pwned"
    command = f"touch {pwned}"
    poisoned = {
        "os.system": {"exc": {"module": "os", "type": "system", "message": command,
                              "args": [command]}},
        "posix.system": {"exc": {"module": "posix", "type": "system", "args": [command]}},
        "subprocess.Popen": {"exc": {"module": "subprocess", "type": "Popen",
                                     "args": [["touch", str(pwned)]]}},
        "builtins.eval": {"exc": {"module": "builtins", "type": "eval",
                                  "args": [f"__import__('os').system('{command}')"]}},
        "not-imported": {"exc": {"module": "antigravity", "type": "Exception", "args": []}},
        "not-an-exception": {"exc": {"module": "builtins", "type": "SystemExit", "args": [3]}},
        "dunder": {"exc": {"module": "os", "type": "__class__", "args": []}},
        "dotted-name": {"exc": {"module": "os", "type": "path.join", "args": ["a"]}},
        "chord-wrapping-os": {"exc": {"module": "flowq.exceptions", "type": "ChordError",
                                      "message": command,
                                      "wraps": {"module": "os", "type": "system"}}},
        "celery-style": {"exc": {"exc_module": "os", "exc_type": "system",
                                 "exc_message": [command]}},
    }
    for name, document in poisoned.items():
        any_backend.store(f"poison-{name}", states.FAILURE, b"j" + json.dumps(document).encode())
    any_backend.store("poison-pickle", states.FAILURE, b"p" + pickle.dumps(
        {"exc": Exploit(str(pwned))}))
    handles = {name: app.AsyncResult(f"poison-{name}", backend=any_backend) for name in poisoned}
    expected = {"chord-wrapping-os": ChordError}  # a chord error around a plain Exception
    for name, handle in handles.items():
        with pytest.raises(expected.get(name, RemoteError)):
            handle.get(timeout=5)
        assert isinstance(handle.result, expected.get(name, RemoteError))
    with pytest.raises(ContentDisallowed):
        app.AsyncResult("poison-pickle", backend=any_backend).get(timeout=5)
    members = [handles["os.system"], handles["dunder"]]
    with pytest.raises(RemoteError):
        GroupResult("poison-group", members, app, backend=any_backend).get(timeout=5)
    assert not pwned.exists()
    assert "antigravity" not in sys.modules


def test_poisoned_traceback_field_still_gives_the_stored_error(any_backend):
    any_backend.store("poison-tb", states.FAILURE, b"j" + json.dumps(
        {"exc": {"module": "builtins", "type": "ValueError", "args": ["x"]},
         "traceback": {"not": "text"}}).encode())
    with pytest.raises(ValueError, match="x"):
        app.AsyncResult("poison-tb", backend=any_backend).get(timeout=5)


# -- C10: bad eta / expires --------------------------------------------------------------------------

NOW = datetime.datetime.now(datetime.timezone.utc)
BAD_TIMES = {
    "countdown-text": {"countdown": "soon"},
    "countdown-nan": {"countdown": float("nan")},
    "countdown-inf": {"countdown": float("inf")},
    "countdown-negative": {"countdown": -5},
    "eta-text": {"eta": "not a date"},
    "eta-nan": {"eta": float("nan")},
    "eta-years-ahead": {"eta": NOW + datetime.timedelta(days=3650)},
    "expires-before-eta": {"countdown": 60, "expires": 30},
    "expires-past": {"expires": NOW - datetime.timedelta(seconds=5)},
    "expires-nan": {"expires": float("nan")},
    "expires-text": {"expires": "tomorrow"},
}


@REDIS_ONLY
def test_bad_eta_and_expires_are_rejected_when_sent(bad):
    """C10: times that can never work are refused at publish time, with a typed error,
    and nothing is sent or delayed."""
    delayed = app.backend.delay_count()
    for options in BAD_TIMES.values():
        with pytest.raises((InvalidWorkflow, MalformedMessage)):
            step.apply_async((1,), **options)
    assert queue_size(bad) == 0 and app.backend.delay_count() == delayed


@REDIS_ONLY
def test_past_eta_runs_now_and_expired_message_is_revoked_unrun(bad):
    """C10 on consume: a message whose eta is past runs at once; one already expired is
    not run and gets a REVOKED result, so its waiter does not hang."""
    k = kind()
    past = (NOW - datetime.timedelta(hours=1)).isoformat()
    due = task_headers(step.name, eta=past)
    expired = task_headers(step.name, expires=past)
    publish_raw(bad, json.dumps([[1], {"kind": k}]).encode(), due)
    publish_raw(bad, json.dumps([[2], {"kind": k}]).encode(), expired)
    assert app.AsyncResult(due["id"]).get(timeout=T) == 2
    with pytest.raises(TaskRevokedError, match="expired"):
        app.AsyncResult(expired["id"]).get(timeout=T)
    assert app.AsyncResult(expired["id"]).state == states.REVOKED
    ledger = Ledger(bad, k)
    assert_total_queue([due["id"]], ledger.settle([due["id"]], quiet=0.3))
    assert expired["id"] not in {s.task_id for s in ledger.starts()}


# -- C11: the same task id published twice --------------------------------------------------------


@REDIS_ONLY
@pytest.mark.parametrize("member", ["early_step", "step"])
def test_chord_members_published_twice_run_the_body_once(bad, member):
    """C11: every chord member message is published twice (a client retry after a lost
    confirm). Early-acked members race their copies; late-acked ones see their copy
    after the chord completed. Results and chord counts are per task id: the body runs
    once, with the first results, in order."""
    from tests.reliability import fault_tasks

    task = getattr(fault_tasks, member)
    k, kb = kind(), kind()
    ledger, bodies = Ledger(bad, k), Ledger(bad, kb)
    sent: list[Any] = []
    publisher = app.runtime.publisher
    original = publisher.send_now
    publisher.send_now = lambda messages: (sent.extend(messages), original(messages))[1]
    try:
        _, result = send_workflow(chord([task.s(i, kind=k) for i in range(4)],
                                               body.s(kind=kb)))
        if member == "step":
            assert result.get(timeout=T) == 10
        original(sent)  # the duplicates
    finally:
        publisher.send_now = original
    assert result.get(timeout=T) == 1 + 2 + 3 + 4
    members = task_ids(result.parent)
    wait_for(lambda: len(ledger.starts()) >= 8, T, "every copy to run")
    completed = ledger.settle(members, quiet=0.5)
    assert bodies.settle([result.id], quiet=0.5) == [result.id]
    assert bad.ledger_list(f"{kb}:inputs") == ["[1, 2, 3, 4]"]
    assert_total_queue(members, completed, max_completions=2)


# -- C12: secrets -------------------------------------------------------------------------------------

SECRET = "s3cr3t-pw-" + uuid.uuid4().hex[:6]


def test_settings_backends_and_errors_never_show_passwords(caplog):
    """C12: repr/str of settings and backends, and the errors and log lines of an
    unreachable broker and backend, mask the password."""
    caplog.set_level(logging.DEBUG)
    broker_url = f"redis://user:{SECRET}@127.0.0.1:1/0"
    backend_url = f"redis://:{SECRET}@127.0.0.1:1/0"
    with scratch_app("secrets", broker=broker_url, backend=backend_url,
                     broker_connection_max_retries=1) as other:
        texts = [repr(other.conf), str(other.conf), repr(other),
                 json.dumps(other.conf.as_dict(), default=str)]
        backend = RedisBackend(backend_url, retries=1, retry_delay=0.01)
        texts += [repr(backend), str(backend), backend.url]
        with pytest.raises(BackendUnavailable) as unavailable:
            backend.get("x")
        texts.append(str(unavailable.value))

        @other.task
        def nothing() -> None:
            pass

        runtime = other.runtime
        with pytest.raises(BrokerUnavailable) as no_broker:
            runtime.publisher.publish([runtime.builder.for_node(
                runtime.workflows.carry(other.compile(nothing.s())), 0, (), {},
                root_id="r", parent_id=None)])
        texts.append(str(no_broker.value))
        texts.append(caplog.text)
    leaked = [text[:200] for text in texts if SECRET in text]
    assert leaked == []
    assert "**" in texts[0] and "**" in str(no_broker.value)


def test_worker_logs_never_show_the_broker_password(private_redis, tmp_path_factory):
    """C12: a worker on a password-protected Redis (which it loses and finds again)
    prints the URL masked everywhere: banner, reconnect messages, inspect replies."""
    from tests.reliability.faults import PrivateRedis

    secure = PrivateRedis(private_redis.directory.parent / "secure", password=SECRET)
    secure.start()
    cluster = FaultCluster("private", tmp_path_factory.mktemp("secure"), broker_url=secure.url,
                           backend_url=secure.url + "?key_prefix={prefix}")
    cluster.configure(app)
    try:
        worker = cluster.start(concurrency=1)
        assert step.apply_async((1,), {"kind": kind()}).get(timeout=T) == 2
        replies = app.control.inspect(destination=[worker.hostname])._ask("conf") or {}
        secure.kill()
        time.sleep(2.5)  # reconnect attempts get logged
        secure.start()
        assert step.apply_async((2,), {"kind": kind()}).get(timeout=T) == 3
        log = worker.log()
        assert "reconnecting" in log
        assert SECRET not in log and SECRET not in json.dumps(replies, default=str)
        assert ":**@" in log
    finally:
        cluster.cleanup()
        secure.stop()
        app.close()


# -- C13: golden wire messages ---------------------------------------------------------------------

GOLDEN = golden.load_cases()


def _decode_golden(case: dict[str, Any], message: dict[str, Any]) -> tuple[Any, Any]:
    backend = MemoryBackend(f"memory://golden-{uuid.uuid4().hex}")
    for ref, text in case["blobs"].items():
        backend.put_blob(f"wf:{ref}", text.encode())
    body_bytes = base64.b64decode(message["body"])
    request = parse(message["headers"], body_bytes, message["content_type"],
                    message["content_encoding"], app.accepted_content)
    carried = WorkflowStore(backend, 4096, 1000, None).load(request.headers, request.task,
                                                            request.id)
    return request, carried.workflow


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_protocol1_messages_decode_to_the_same_graph(name):
    """C13: every checked-in protocol-1 message decodes to the graph it was made from,
    with the same node ids, and its body to its arguments."""
    case = GOLDEN[name]
    assert case["protocol"] == 1 and case["messages"]
    for message in case["messages"]:
        request, workflow = _decode_golden(case, message)
        expected = copy.deepcopy(case["graph"])
        if not {"wf", "wf_ref"} & set(message["headers"]):
            # a lone task travels without a workflow: its arguments are in the body only
            expected["nodes"][0].update(args=[], kwargs={})
        assert golden.describe(workflow) == expected
        assert workflow.node_id(request.node) == request.id
        node = case["graph"]["nodes"][request.node]  # an entry node: its own arguments only
        assert decode_body(request, app.accepted_content) == (node["args"], node["kwargs"])


def test_golden_files_cover_every_canvas_and_are_not_regenerated():
    assert set(GOLDEN) == {f"protocol1-{name}" for name in golden.canvases()}
    assert golden.write_missing() == []


def test_unknown_optional_fields_are_accepted_and_unknown_critical_ones_rejected():
    """C13: a newer writer's extra top-level field is ignored unless listed in ``crit``;
    an extra message header is ignored."""
    case = GOLDEN["protocol1-chain"]
    message = copy.deepcopy(case["messages"][0])
    message["headers"]["wf"]["x_hint"] = {"anything": [1, 2]}
    message["headers"]["x-newer-header"] = "ignored"
    _, workflow = _decode_golden(case, message)
    assert golden.describe(workflow) == case["graph"]
    message["headers"]["wf"]["crit"] = ["x_hint"]
    with pytest.raises(MalformedCanvas, match="x_hint"):
        _decode_golden(case, message)
    known = copy.deepcopy(case["messages"][0])
    known["headers"]["wf"]["crit"] = ["scopes"]  # a critical field this reader knows
    assert golden.describe(_decode_golden(case, known)[1]) == case["graph"]


@REDIS_ONLY
def test_worker_runs_a_golden_message_and_rejects_a_critical_unknown(bad):
    """C13 end to end: the worker runs a protocol-1 chain message carrying an unknown
    optional field and dead-letters one that marks an unknown field critical."""
    case = GOLDEN["protocol1-chain"]
    message = copy.deepcopy(case["messages"][0])
    seed = str(uuid.uuid4())  # a fresh workflow id for this run (ids derive from it)
    message["headers"].update({"id": seed, "root_id": seed})
    message["headers"]["wf"].update({"seed": seed, "x_hint": 1})
    body_bytes = base64.b64decode(message["body"])
    publish_raw(bad, body_bytes, message["headers"], message["content_type"],
                message["content_encoding"])
    workflow = wire.decode(message["headers"]["wf"])
    # step(1) = 2, then step.si(5) = 6 ignoring it, then step(6, add=3) = 9
    assert app.AsyncResult(workflow.node_id(workflow.output)).get(timeout=T) == 9
    critical = copy.deepcopy(message)
    seed = str(uuid.uuid4())
    critical["headers"].update({"id": seed, "root_id": seed})
    critical["headers"]["wf"].update({"seed": seed, "crit": ["x_hint"]})
    publish_raw(bad, body_bytes, critical["headers"], critical["content_type"],
                critical["content_encoding"])
    (dead,) = dead_letters(bad, 1)
    assert "x_hint" in dead.headers[REASON]
