"""Message signing against a real worker (scenario C7): every tampered, foreign, stale
or unsigned message is dead-lettered with a security log line and no task code runs."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu import Connection, Producer

from flowq.runtime import signing
from flowq.runtime.consumer import REASON_HEADER
from tests.integration.app import app, note
from tests.integration.harness import Cluster

KEY = "test-signing-key"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A Redis worker that requires signatures, and a client app that signs."""
    from tests.integration.harness import require_server

    require_server("Redis", 6379)
    cluster = Cluster("redis", tmp_path_factory.mktemp("signed"))
    cluster.configure(app)
    app.conf.security_key = KEY
    cluster.start_worker(env={"FLOWQ_TEST_SECURITY_KEY": KEY})
    yield cluster
    app.conf.security_key = None
    cluster.cleanup()
    app.close()


def signed_message(kind: str, value: Any = 1) -> dict[str, Any]:
    """A correctly signed message for ``note(value, kind=kind)``, as raw parts."""
    workflow = app.compile(note.s(value, kind=kind))
    runtime = app.runtime
    message = runtime.builder.for_node(runtime.workflows.carry(workflow), 0, (value,),
                                       {"kind": kind}, root_id=workflow.seed, parent_id=None)
    return {"headers": dict(message.headers), "body": message.body,
            "content_type": message.content_type,
            "content_encoding": message.content_encoding, "id": message.id}


def publish(cluster: Cluster, parts: dict[str, Any]) -> None:
    with Connection(cluster.broker_url) as connection:
        Producer(connection.default_channel).publish(
            parts["body"], exchange=cluster.queue, routing_key=cluster.queue,
            headers=parts["headers"], content_type=parts["content_type"],
            content_encoding=parts["content_encoding"])


def dead_letters(cluster: Cluster, count: int, timeout: float = 20) -> list[dict[str, Any]]:
    """Read ``count`` messages from the dead-letter queue (their headers)."""
    from flowq.runtime.broker import dead_letter_queue

    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    with Connection(cluster.broker_url) as connection:
        queue = dead_letter_queue(cluster.queue)(connection.default_channel)
        queue.declare()
        while len(found) < count and time.monotonic() < deadline:
            message = queue.get(no_ack=True)
            if message is None:
                time.sleep(0.1)
            else:
                found.append(dict(message.headers))
    return found


def _resign(parts: dict[str, Any], key: str = KEY, key_id: str = "default",
            at: float | None = None) -> dict[str, Any]:
    headers = {k: v for k, v in parts["headers"].items() if k != signing.HEADER}
    signing.sign(headers, parts["body"], parts["content_type"], parts["content_encoding"],
                 key, key_id, at)
    return {**parts, "headers": headers}


TAMPERING: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "body changed by one byte": lambda p: {**p, "body": p["body"].replace(b"1", b"2", 1)},
    "task name swapped": lambda p: {**p, "headers": {**p["headers"],
                                                     "task": "tests.integration.app.fail"}},
    "eta changed": lambda p: {**p, "headers": {**p["headers"], "eta": "2026-01-01T00:00:00"}},
    "retries changed": lambda p: {**p, "headers": {**p["headers"], "retries": 3}},
    "callback replaced": lambda p: {**p, "headers": {**p["headers"], "wf": {"v": 1}}},
    "content type set to pickle": lambda p: {**p, "content_type": "application/json; x=1"},
    "unknown key id": lambda p: _resign(p, key="other", key_id="intruder"),
    "replayed after the ttl": lambda p: _resign(p, at=time.time() - 10 * 86400),
    "no signature": lambda p: {**p, "headers": {k: v for k, v in p["headers"].items()
                                                if k != signing.HEADER}},
    "truncated signature": lambda p: {**p, "headers": {
        **p["headers"], signing.HEADER: p["headers"][signing.HEADER][:-6]}},
    "garbled signature": lambda p: {**p, "headers": {**p["headers"],
                                                     signing.HEADER: "v1:default:x:zz"}},
}


def test_a_signed_message_runs_and_broker_headers_do_not_break_it(signed):
    kind = f"k-{uuid.uuid4().hex[:6]}"
    assert note.delay(7, kind=kind).get(timeout=30) == 7
    parts = signed_message(kind, 8)
    parts["headers"].update({"x-death": [{"count": 1}], "x-delivery-count": 2,
                             "redelivered": True})
    publish(signed, parts)
    assert app.AsyncResult(parts["id"]).get(timeout=30) == 8


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_tampered_messages_are_dead_lettered_and_never_run(signed, case):
    kind = f"k-{uuid.uuid4().hex[:6]}"
    parts = TAMPERING[case](signed_message(kind))
    if case == "content type set to pickle":
        parts["content_type"] = "application/x-python-serialize"
    publish(signed, parts)
    (dead,) = dead_letters(signed, 1)
    assert dead["id"] == parts["headers"]["id"]
    expected = "ContentDisallowed" if "pickle" in case else "InvalidSignature"
    assert dead[REASON_HEADER].startswith(expected), dead[REASON_HEADER]
    time.sleep(0.5)
    assert signed.ledger_list(kind) == []  # no task code ran
    assert app.AsyncResult(parts["id"]).state == "PENDING"


def test_a_replay_of_a_finished_task_is_refused(signed):
    kind = f"k-{uuid.uuid4().hex[:6]}"
    parts = signed_message(kind, 5)
    publish(signed, parts)
    assert app.AsyncResult(parts["id"]).get(timeout=30) == 5
    publish(signed, parts)  # the same valid message again
    (dead,) = dead_letters(signed, 1)
    assert "replayed" in dead[REASON_HEADER]
    assert signed.ledger_list(kind) == [parts["id"]]


def test_security_log_line_names_the_problem(signed):
    parts = TAMPERING["no signature"](signed_message("unused"))
    publish(signed, parts)
    dead_letters(signed, 1)
    deadline = time.monotonic() + 10
    while "flowq.security" not in signed.workers[0].log() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next(line for line in signed.workers[0].log().splitlines()
                if "flowq.security" in line and parts["headers"]["id"] in line)
    assert "is not signed" in line
    assert json.dumps(KEY) not in line and KEY not in line
