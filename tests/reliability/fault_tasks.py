"""Tasks that fail on purpose, and worker settings the reliability tests inject.

Imported at the end of ``tests.integration.app`` so every test worker registers them.
Worker settings come from ``FLOWQ_TEST_*`` variables a test puts in the worker's
environment (the test process never sets them, so its app keeps the defaults):

* ``FLOWQ_TEST_LEASE``: ``broker_lease_seconds`` (Redis, embedded): how long a killed
  worker's messages stay held before another worker takes them;
* ``FLOWQ_TEST_MAX_DELIVERIES``: ``task_max_deliveries``;
* ``FLOWQ_TEST_MAX_NODES``: ``workflow_max_nodes``;
* ``FLOWQ_TEST_BODY_LIMIT``: ``message_body_limit`` in bytes;
* ``FLOWQ_TEST_DECODER_SENTINEL=1``: every non-JSON deserializer (and ``pickle.loads``)
  records the call in the ledger and raises instead of decoding.

Every fault task writes its start and end to the ledger as
``<task id>|<pid>|<attempt>|<unix time>`` (``<kind>:starts`` / ``<kind>:ends``), where the
attempt is counted in the ledger, so a fault fires on the first attempt only and the
redelivery runs clean. See :mod:`tests.reliability.faults` for the fault names.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from flowq.exceptions import SoftTimeLimitExceeded
from tests.integration.app import app, ledger, record

# -- worker settings from the environment ------------------------------------------------------


def _configure_from_environment() -> None:
    env = os.environ
    if env.get("FLOWQ_TEST_LEASE"):
        app.conf.broker_lease_seconds = float(env["FLOWQ_TEST_LEASE"])
    if env.get("FLOWQ_TEST_MAX_DELIVERIES"):
        app.conf.task_max_deliveries = int(env["FLOWQ_TEST_MAX_DELIVERIES"])
    if env.get("FLOWQ_TEST_MAX_NODES"):
        app.conf.workflow_max_nodes = int(env["FLOWQ_TEST_MAX_NODES"])
    if env.get("FLOWQ_TEST_BODY_LIMIT"):
        app.conf.message_body_limit = int(env["FLOWQ_TEST_BODY_LIMIT"])
    if env.get("FLOWQ_TEST_DECODER_SENTINEL") == "1":
        _install_decoder_sentinels()


#: Callers allowed to use the real pickle: the pool's own parent/child pipes.
_POOL_MODULES = ("billiard", "multiprocessing", "copyreg", "pickle")


def _install_decoder_sentinels() -> None:
    """Replace ``pickle.loads`` and every non-JSON kombu decoder with a tripwire.

    The pool's modules are imported first so they keep the real ``pickle.loads`` (they
    capture it at import); a call from anywhere else is written to the ledger
    (``decoders``) and fails, so a test can assert no deserializer ever saw a message
    whose content type is not accepted.
    """
    import pickle

    # Imported first, so the pool's modules capture the real pickle.loads.
    import billiard.common
    import billiard.pool
    import billiard.queues
    import billiard.reduction  # noqa: F401
    from kombu import serialization

    def tripwire(name: str, original: Any) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith(_POOL_MODULES) and name.startswith("pickle."):
                return original(*args, **kwargs)
            record("decoders", f"{name}|{caller}|{os.getpid()}")
            raise RuntimeError(f"decoder sentinel: {name} must never run (called from {caller})")
        return called

    pickle.loads = tripwire("pickle.loads", pickle.loads)
    serialization.pickle_loads = tripwire("pickle.loads", serialization.pickle_loads)
    serialization.unpickle = tripwire("pickle.loads", serialization.unpickle)
    decoders = serialization.registry._decoders
    for content_type in list(decoders):
        if content_type != "application/json":
            decoders[content_type] = tripwire(content_type, decoders[content_type])


_configure_from_environment()


# -- ledger helpers ------------------------------------------------------------------------------


def _prefix() -> str:
    # Read at call time: the test process repoints the ledger per cluster.
    return sys.modules["tests.integration.app"].LEDGER_PREFIX  # type: ignore[no-any-return]


def _stamp(task_id: str, attempt: int) -> str:
    return f"{task_id}|{os.getpid()}|{attempt}|{time.time():.6f}"


def next_attempt(task_id: str) -> int:
    """Count this run of ``task_id`` in the ledger (1 for the first delivery)."""
    return int(ledger().incr(f"{_prefix()}attempts:{task_id}"))


def released(token: str) -> bool:
    return bool(ledger().exists(f"{_prefix()}release:{token}"))


def wait_until(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {timeout}s")
        time.sleep(0.01)


# -- kill points after the task body returned -------------------------------------------------


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # never reached: SIGKILL cannot be caught


class Bomb(int):
    """An int result that kills its process once it is fully recorded.

    The pool child calls ``repr`` on a task's return value for the worker's log line
    after the result, the chord part and the next steps are all recorded and published,
    and before it hands the outcome back: killing there means the worker never acks.
    """

    def __repr__(self) -> str:
        _die()
        return int.__repr__(self)


class Fuse:
    """A result kombu's JSON encoder must ask for (``__json__``); kills its process on
    the ``encode_kill``-th encoding. In a pool child the first encoding is the result
    document (before the store) and the third the next chain step's argument (after
    the store, before the publish)."""

    def __init__(self, value: int, encode_kill: int):
        self.value = value
        self.encode_kill = encode_kill
        self.encodings = 0

    def __json__(self) -> int:
        self.encodings += 1
        if self.encodings == self.encode_kill:
            _die()
        return self.value

    def __repr__(self) -> str:
        return repr(self.value)


def _kill_before_dispatch_of(task_name: str | None) -> None:
    """Arm a one-shot hook: die when this process is about to publish ``task_name`` (any
    task when None) after this task's result is recorded."""
    advancer = app.runtime.advancer
    original = advancer.dispatch

    def dispatch(messages: Any) -> None:
        advancer.dispatch = original
        if any(task_name in (None, m.headers.get("task")) for m in messages):
            _die()
        original(messages)

    advancer.dispatch = dispatch


def _kill_before_advanced_flag() -> None:
    """Arm a one-shot hook: die just before the 'advanced' flag of a late-acked task is set
    (its results are recorded and its next steps published)."""
    backend = app.runtime.backend
    original = backend.set_flag

    def set_flag(key: str, expires: float | None = None) -> bool:
        if key.startswith("adv:"):
            del backend.set_flag  # back to the class's method
            _die()
        return original(key, expires)

    backend.set_flag = set_flag


# -- tasks ------------------------------------------------------------------------------------------


def _run_step(task: Any, value: Any, add: int, fault: str | None, kind: str,
              sleep: float, wait_for: list[Any] | None, token: str | None) -> Any:
    request = task.request
    attempt = next_attempt(request.id)
    record(f"{kind}:starts", _stamp(request.id, attempt))
    first = attempt == 1 and not request.is_eager
    if wait_for and not request.is_eager:
        # ["parts", n]: until n parts of this member's chord are recorded, so this member
        # is the one that completes it; [ledger kind, n]: until n entries are in the ledger
        wanted, count = wait_for
        if wanted == "parts":
            group = request.group
            wait_until(lambda: len(app.runtime.backend.chord_values(group)) >= count, 30,
                       f"{count} parts of chord {group}")
        else:
            wait_until(lambda: ledger().llen(f"{_prefix()}{wanted}") >= count, 30,
                       f"{count} entries in {wanted}")
    if fault == "block" and first:
        wait_until(lambda: released(token or request.id), 30, "release")
    if sleep:
        time.sleep(sleep)
    if fault == "os_exit" and first:
        os._exit(1)
    if fault == "always_exit" and not request.is_eager:
        os._exit(1)
    if fault == "system_exit" and first:
        raise SystemExit(1)
    result = (value or 0) + add if not isinstance(value, list) else _total(value) + add
    record(f"{kind}:ends", _stamp(request.id, attempt))
    if not first:
        return result
    if fault == "kill_before_store":
        return Fuse(result, encode_kill=1)
    if fault == "kill_before_next":
        return Fuse(result, encode_kill=3)
    if fault == "kill_after_record":
        return Bomb(result)
    if fault == "kill_before_body":
        _kill_before_dispatch_of(BODY_NAME)
    if fault == "kill_before_dispatch":
        _kill_before_dispatch_of(None)
    if fault == "kill_before_flag":
        _kill_before_advanced_flag()
    return result


def _total(value: Any) -> int:
    if isinstance(value, list):
        return sum(_total(v) for v in value)
    return int(value or 0)


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True)
def step(self, value=None, add=1, fault=None, kind="steps", sleep=0.0, wait_for=None,
         token=None):
    """A late-acked step (requeued if its process dies) that records its start and end,
    adds ``add`` to its input (a list input is summed) and injects ``fault`` on its
    first attempt."""
    return _run_step(self, value, add, fault, kind, sleep, wait_for, token)


@app.task(bind=True, acks_late=True)
def late_step(self, value=None, add=1, fault=None, kind="steps", sleep=0.0, wait_for=None,
              token=None):
    """Like :func:`step`, acked late but failed with WorkerLostError if its process dies."""
    return _run_step(self, value, add, fault, kind, sleep, wait_for, token)


@app.task(bind=True)
def early_step(self, value=None, add=1, fault=None, kind="steps", sleep=0.0, wait_for=None,
               token=None):
    """Like :func:`step`, acked when it starts (the default)."""
    return _run_step(self, value, add, fault, kind, sleep, wait_for, token)


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True)
def body(self, values, kind="bodies"):
    """A chord body: records each run (with its input) and returns the input's total."""
    attempt = next_attempt(self.request.id)
    record(f"{kind}:starts", _stamp(self.request.id, attempt))
    record(f"{kind}:ends", _stamp(self.request.id, attempt))
    record(f"{kind}:inputs", repr(values))
    return _total(values)


BODY_NAME = body.name


@app.task
def on_error(failed_id, kind="errbacks"):
    """An errback: records the failed task's id."""
    record(kind, str(failed_id))
    return failed_id


@app.task(bind=True, soft_time_limit=0.5, time_limit=3)
def soft_catcher(self):
    """Catches its soft time limit and returns normally."""
    record("soft:starts", self.request.id)
    try:
        time.sleep(5)
    except SoftTimeLimitExceeded:
        record("soft:caught", self.request.id)
        return "caught"
    return "not interrupted"


@app.task(bind=True, soft_time_limit=0.5, time_limit=1.5)
def soft_ignorer(self):
    """Swallows its soft time limit and keeps going until the hard limit kills it."""
    record("soft:starts", self.request.id)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            time.sleep(0.05)
        except SoftTimeLimitExceeded:
            record("soft:ignored", self.request.id)
    record("soft:ends", self.request.id)
    return "survived"


@app.task(bind=True, time_limit=1)
def overrun(self, seconds):
    """Sleeps past its hard time limit; records the pid so the test sees the child go."""
    record("overrun:starts", f"{self.request.id}|{os.getpid()}")
    time.sleep(seconds)
    record("overrun:ends", self.request.id)
    return "finished"


@app.task
def probe_pickle():
    """Whether ``pickle.loads`` in this process is the decoder sentinel (proves it is on)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(1))
    except RuntimeError:
        return "sentinel"
    return "real pickle"

