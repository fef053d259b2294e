"""The Signal class (connect, senders, weak references, dispatch_uid, disconnect, send)
and the task signals of an eager run. Signals on a real worker are tested in
``tests/integration/test_signals.py``."""

from __future__ import annotations

import gc
import logging
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowq import Flowq, signals
from flowq.exceptions import ConfigurationError, TaskRevokedError
from flowq.runtime.worker import Worker
from flowq.signals import Signal
from tests.integration.harness import wait_for


@pytest.fixture
def signal() -> Signal:
    return Signal("test_signal", {"value"})


def test_connect_as_decorator_with_and_without_arguments(signal):
    calls: list[tuple[str, Any, Any]] = []

    @signal.connect
    def anyone(sender=None, value=None, **kwargs):
        calls.append(("anyone", sender, value))
        return "a"

    @signal.connect(sender="tasks.add")
    def add_only(sender=None, value=None, signal=None, **kwargs):
        calls.append(("add_only", sender, signal.name))
        return "b"

    assert callable(anyone) and callable(add_only)  # the decorators return the function
    assert signal.send("tasks.add", value=1) == [(anyone, "a"), (add_only, "b")]
    assert signal.send("tasks.mul", value=2) == [(anyone, "a")]
    assert calls == [("anyone", "tasks.add", 1), ("add_only", "tasks.add", "test_signal"),
                     ("anyone", "tasks.mul", 2)]


def test_an_object_sender_is_matched_by_identity(signal):
    class Sender:
        pass

    mine, other = Sender(), Sender()
    got: list[Any] = []
    signal.connect(lambda sender=None, **kwargs: got.append(sender), sender=mine, weak=False)
    signal.send(other)
    signal.send(mine)
    assert got == [mine]
    assert signal.has_listeners(mine) and not signal.has_listeners(other)


def test_connecting_twice_keeps_one_and_dispatch_uid_names_a_receiver(signal):
    def receiver(**kwargs):
        return "r"

    signal.connect(receiver)
    signal.connect(receiver)
    assert len(signal.send(None)) == 1
    signal.connect(lambda **kwargs: "first", weak=False, dispatch_uid="uid")
    signal.connect(lambda **kwargs: "second", weak=False, dispatch_uid="uid")
    assert [reply for _, reply in signal.send(None)] == ["r", "first"]
    assert signal.disconnect(dispatch_uid="uid") is True
    assert signal.disconnect(receiver) is True
    assert signal.disconnect(receiver) is False
    assert signal.send(None) == [] and not signal.receivers


def test_disconnect_is_per_sender(signal):
    def receiver(**kwargs):
        return "r"

    signal.connect(receiver, sender="a")
    signal.connect(receiver, sender="b")
    assert signal.disconnect(receiver, sender="a")
    assert signal.send("a") == [] and signal.send("b") == [(receiver, "r")]


def test_weak_receivers_go_away_with_their_function_strong_ones_stay(signal):
    def make() -> Any:
        def receiver(**kwargs):
            return "weak"
        return receiver

    temporary = make()
    signal.connect(temporary)
    signal.connect(make(), weak=False)
    assert sorted(reply for _, reply in signal.send(None)) == ["weak", "weak"]
    del temporary
    gc.collect()
    assert [reply for _, reply in signal.send(None)] == ["weak"]
    assert len(signal.receivers) == 1  # the dead one was dropped


def test_a_bound_method_is_held_weakly_by_its_object(signal):
    class Handler:
        def on(self, **kwargs):
            return id(self)

    handler = Handler()
    signal.connect(handler.on)  # a new bound method object each time: kept through its object
    assert signal.send(None) == [(handler.on, id(handler))]
    del handler
    gc.collect()
    assert signal.send(None) == []


def test_a_raising_receiver_is_logged_and_the_others_still_run(signal, caplog):
    def broken(**kwargs):
        raise RuntimeError("broken receiver")

    def fine(**kwargs):
        return "fine"

    signal.connect(broken)
    signal.connect(fine)
    with caplog.at_level(logging.ERROR, logger="flowq.signals"):
        replies = signal.send("sender")
    assert replies[1] == (fine, "fine")
    assert replies[0][0] is broken and isinstance(replies[0][1], RuntimeError)
    assert "broken receiver" in caplog.text and "test_signal" in caplog.text


def test_a_receiver_without_kwargs_is_refused_at_connect(signal):
    def positional_only(sender):
        return None

    with pytest.raises(ConfigurationError, match=r"must accept \*\*kwargs"):
        signal.connect(positional_only)
    with pytest.raises(ConfigurationError, match="callable"):
        signal.connect("not a function")  # type: ignore[arg-type]
    assert not signal.receivers


def test_retry_calls_a_raising_receiver_again_until_it_succeeds(signal, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr("flowq.signals.time.sleep", waits.append)
    attempts: list[int] = []

    def flaky(**kwargs):
        attempts.append(1)
        if len(attempts) < 4:
            raise ConnectionError("database restarting")
        return "connected"

    signal.connect(flaky, retry=True)
    assert [reply for _, reply in signal.send(None)] == ["connected"]
    assert waits == [1.0, 2.0, 4.0]
    assert signal.disconnect(flaky)  # by the function itself, as connected


# -- the task signals of an eager run ------------------------------------------------------------


@pytest.fixture
def eager() -> Iterator[Flowq]:
    app = Flowq("signals-eager", task_always_eager=True)
    yield app


@pytest.fixture
def record() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every task signal (and the publishing ones) as ``(name, arguments)``."""
    seen: list[tuple[str, dict[str, Any]]] = []
    connected = {}
    for name in ("before_task_publish", "after_task_publish", "task_prerun", "task_postrun",
                 "task_success", "task_failure", "task_retry"):
        def receiver(name: str = name, **kwargs: Any) -> None:
            seen.append((name, kwargs))
        getattr(signals, name).connect(receiver, weak=False)
        connected[name] = receiver
    yield seen
    for name, receiver in connected.items():
        getattr(signals, name).disconnect(receiver)


def test_an_eager_run_sends_the_task_signals_but_publishes_nothing(eager, record):
    @eager.task(bind=True)
    def add(self, x, y):
        return x + y

    @eager.task
    def boom(x):
        raise KeyError(x)

    assert add.delay(1, 2).get() == 3
    with pytest.raises(KeyError):
        boom.delay("k").get()
    names = [name for name, _ in record]
    assert names == ["task_prerun", "task_success", "task_postrun",
                     "task_prerun", "task_failure", "task_postrun"]
    prerun, success, postrun, _, failure, failed = (kwargs for _, kwargs in record)
    assert prerun["sender"] is add and prerun["task"] is add
    assert (prerun["args"], prerun["kwargs"]) == ((1, 2), {})
    assert success["result"] == 3 and (postrun["state"], postrun["retval"]) == ("SUCCESS", 3)
    assert failure["sender"] is boom and isinstance(failure["exception"], KeyError)
    assert failure["einfo"].type is KeyError and "raise KeyError(x)" in failure["einfo"].traceback
    assert failure["traceback"] is failure["einfo"].tb and failure["args"] == ("k",)
    assert failed["state"] == "FAILURE" and failed["retval"] is failure["exception"]


def test_postrun_states_of_retry_ignore_and_reject(eager, record):
    from flowq.exceptions import Ignore, Reject

    @eager.task(bind=True, max_retries=1, default_retry_delay=0)
    def twice(self):
        if self.request.retries == 0:
            raise self.retry(exc=ValueError("first"))
        return "second"

    @eager.task
    def ignores():
        raise Ignore()

    @eager.task
    def rejects():
        raise Reject("no", requeue=False)

    assert twice.delay().get() == "second"
    ignores.delay()
    rejects.delay()
    postrun = [kwargs["state"] for name, kwargs in record if name == "task_postrun"]
    assert postrun == ["RETRY", "SUCCESS", "IGNORED", "REJECTED"]
    [retry] = [kwargs for name, kwargs in record if name == "task_retry"]
    assert retry["request"].id and retry["request"].retries == 0
    assert isinstance(retry["reason"].exc, ValueError) and retry["einfo"].type.__name__ == "Retry"


# -- the guide's examples (docs/signals.md), run against a worker in this process -----------------


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "signals.md"


def guide_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)


@pytest.mark.timeout(60)
def test_the_signals_guide_examples_run(tmp_path, monkeypatch, caplog):
    # Given the guide's code, run in order in one namespace, up to the blocks that send
    # work; its app pointed at the in-memory broker and a worker (solo pool) in a thread
    monkeypatch.chdir(tmp_path)
    *defining, sending, revoking = guide_blocks()
    namespace: dict[str, Any] = {"__name__": "proj"}
    for block in defining:
        exec(block, namespace)  # noqa: S102 - the guide's own code
    app = namespace["app"]
    token = uuid.uuid4().hex[:8]
    app.conf.update(broker_url="memory://", result_backend=f"memory://guide-{token}",
                    task_default_queue=f"guide-{token}", control_exchange=f"guide-{token}")
    app._reset_runtime()
    worker = Worker(app, pool="solo", queues=[app.conf.task_default_queue])
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        with caplog.at_level(logging.ERROR, logger="proj.errors"):
            check_the_guide(namespace, sending, revoking, worker)
    finally:
        worker.stop()
        thread.join(timeout=20)
        for signal in vars(signals).values():  # the guide's receivers, connected above
            if isinstance(signal, Signal):
                for value in namespace.values():
                    if callable(value):
                        signal.disconnect(value)
    assert "proj.fail[" in caplog.text and "failed with ValueError('bad input 1')" in caplog.text


def check_the_guide(namespace: dict[str, Any], sending: str, revoking: str,
                    worker: Worker) -> None:
    add, fail, traced = (namespace[name] for name in ("add", "fail", "traced"))
    # receivers: the one for every task and the one for add only
    assert add.delay(2, 3).get(timeout=20) == 5
    failed = fail.delay(1)
    with pytest.raises(ValueError):
        failed.get(timeout=20)
    assert namespace["started"] == {failed.id: "proj.fail"}
    # the trace id travels with the message, and on to the next step
    chained = (traced.s(1) | traced.s()).delay()
    first, last = chained.parent.get(timeout=20), chained.get(timeout=20)
    assert first["trace_id"] and last["trace_id"] == first["trace_id"]
    # the worker's process opened its own connection when it started
    assert namespace["count_orders"].delay().get(timeout=20) == 0

    exec(sending, namespace)  # noqa: S102 - prints the stamped chord's result
    outcome = namespace["result"].get(timeout=20)
    assert outcome["total"] == 6 and outcome["stamps"]["release"] == "2026.12"
    assert len(outcome["stamps"]["monitoring_id"]) == 32

    exec(revoking, namespace)  # noqa: S102
    wait_for(lambda: worker.revoked_stamps.match({"release": "2026.12"}), 20,
             "the worker hearing of the revocation")
    late = add.s(1, 1).stamp(release="2026.12").delay()
    with pytest.raises(TaskRevokedError):
        late.get(timeout=20)
    assert add.s(1, 1).stamp(release="2027.01").delay().get(timeout=20) == 2


def test_a_shared_task_as_sender_stands_for_the_current_apps_task(eager, record):
    from flowq import shared_task

    @shared_task
    def shared_double(x):
        return 2 * x

    got: list[Any] = []
    receiver = signals.task_success.connect(
        lambda sender=None, result=None, **kwargs: got.append((sender.name, result)),
        sender=shared_double, weak=False)
    try:
        assert shared_double.delay(21).get() == 42
    finally:
        signals.task_success.disconnect(receiver, sender=shared_double)
    assert got == [(shared_double.name, 42)]
