"""Tasks for the task-semantics integration tests (``tests/integration/test_task_*.py``).

Registered on the integration app: ``tests/integration/app.py`` imports this module at
its end, so every worker started by the harness knows these tasks.

Each task writes its side effects to the Redis ledger under a ``kind`` chosen by the
test, so a test can count runs, starts and ends exactly.

Worker-wide settings some tests need are read from ``FLOWQ_TEST_*`` variables here,
before any worker starts (settings must be on the app before the worker reads them).
The test process never sets them, so its app keeps the defaults.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from billiard import exceptions as pool_exceptions

from flowq import signature
from flowq.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from tests.integration.app import add, app, fail, mul, whoami

#: variable -> (setting, type): worker-wide settings for fresh workers started by tests
_ENV_SETTINGS = {
    "FLOWQ_TEST_TIME_LIMIT": ("task_time_limit", float),
    "FLOWQ_TEST_SOFT_TIME_LIMIT": ("task_soft_time_limit", float),
    "FLOWQ_TEST_MAX_DELIVERIES": ("task_max_deliveries", int),
    "FLOWQ_TEST_QUEUE_TYPE": ("broker_queue_type", str),
}
for _variable, (_setting, _type) in _ENV_SETTINGS.items():
    if os.environ.get(_variable):
        app.conf[_setting] = _type(os.environ[_variable])


def push(kind: str, value: object) -> int:
    """Append ``value`` to the ledger list ``kind``; return the list's new length.

    The ledger's prefix is read from the app module at call time: the test process
    points it at each cluster's private prefix after import.
    """
    ledger_module = sys.modules["tests.integration.app"]
    return int(ledger_module.ledger().rpush(f"{ledger_module.LEDGER_PREFIX}{kind}", str(value)))


def _kill_this_process() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


# -- retries ---------------------------------------------------------------------------------


@app.task(bind=True, max_retries=5)
def flaky(self, value, kind, failures=1, countdown=0.2):
    """Fail (and retry after ``countdown``) ``failures`` times, then return ``value``."""
    retries = self.request.retries
    push(kind, f"{self.request.id}:{retries}")
    if retries < failures:
        raise self.retry(exc=ValueError(f"attempt {retries} failed"), countdown=countdown)
    return value


@app.task(bind=True, max_retries=2)
def always_retry(self, kind):
    """Retry on every run: fails with MaxRetriesExceededError after 3 runs."""
    push(kind, f"{self.request.id}:{self.request.retries}")
    raise self.retry(exc=ValueError(f"boom on attempt {self.request.retries}"), countdown=0.1)


@app.task(bind=True, max_retries=None)
def retry_unbounded(self, kind, until):
    """``max_retries=None``: retries until attempt ``until`` (more than the default 3)."""
    push(kind, f"{self.request.id}:{self.request.retries}")
    if self.request.retries < until:
        raise self.retry(exc=ValueError("not yet"), countdown=0.05)
    return self.request.retries


@app.task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=0.2, retry_jitter=False,
          max_retries=3)
def autoretry_down(self, kind):
    """Always raise a retryable error: 4 runs 0.2 s, 0.4 s, 0.8 s apart, then FAILURE."""
    push(kind, f"{self.request.retries}:{time.time():.6f}")
    raise ConnectionError("service down")


# -- time --------------------------------------------------------------------------------------


@app.task(bind=True)
def stamp(self, kind):
    """Record ``id|time`` of the run; return the time."""
    now = time.time()
    push(kind, f"{self.request.id}|{now:.6f}")
    return now


@app.task(bind=True, time_limit=1)
def hard_limited(self, kind, seconds=30):
    """Sleep past its own 1 s hard time limit (the worker kills the child)."""
    push(kind, os.getpid())
    time.sleep(seconds)
    return "finished"


@app.task(bind=True, soft_time_limit=0.5, time_limit=10)
def soft_limited(self, kind, seconds=8):
    """Catch the soft limit and clean up."""
    push(kind, os.getpid())
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(bind=True)
def sleeper(self, kind, seconds):
    """No limits of its own; catches a soft limit (per call or worker-wide)."""
    push(kind, os.getpid())
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "finished"


@app.task(bind=True)
def stubborn(self, kind, seconds):
    """Ignores its soft limit and sleeps on, so only the hard limit stops it.

    It catches billiard's class (the base of flowq's) so it notices the soft limit
    whichever of the two the pool raises.
    """
    push(kind, os.getpid())
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            time.sleep(max(0.0, deadline - time.monotonic()))
        except pool_exceptions.SoftTimeLimitExceeded:
            push(kind, "soft")
    return "finished"


@app.task(time_limit=2)
def limited_two_seconds():
    return "ok"


# -- delivery: acks_late, reject, ignore -------------------------------------------------------


def _die_first_time(task, kind):
    if push(f"{kind}:starts", task.request.id) == 1:
        push(f"{kind}:pids", os.getpid())
        _kill_this_process()
    push(f"{kind}:ends", task.request.id)
    return "survived"


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True)
def die_once(self, kind):
    """Kill its own process the first time; redelivered, it succeeds."""
    return _die_first_time(self, kind)


@app.task(bind=True, acks_late=True)
def die_once_unprotected(self, kind):
    """As :func:`die_once`, without ``reject_on_worker_lost``: fails with WorkerLostError."""
    return _die_first_time(self, kind)


@app.task(bind=True, acks_late=True, reject_on_worker_lost=True)
def die_always(self, kind):
    """A crash loop: kills its own process on every delivery."""
    push(kind, self.request.id)
    _kill_this_process()


@app.task(bind=True, acks_late=True)
def reject_first(self, kind, requeue):
    """Raise Reject the first time; run normally when delivered again."""
    if push(kind, self.request.id) == 1:
        raise Reject("not now", requeue=requeue)
    return "second delivery"


@app.task(bind=True)
def ignored(self, kind):
    push(kind, self.request.id)
    raise Ignore()


# -- results and ids ---------------------------------------------------------------------------


@app.task(bind=True, ignore_result=True)
def no_result(self, kind):
    push(kind, self.request.id)
    return "thrown away"


@app.task
def with_callback(value, callback):
    """Send ``callback`` (a signature passed as an argument) with ``value``; its id."""
    return signature(callback).delay(value).id


@app.task(bind=True)
def header_probe(self, name):
    """The headers its caller added (the one named ``name`` must be among them)."""
    assert name in self.request.headers, sorted(self.request.headers)
    return {k: v for k, v in self.request.headers.items() if not k.startswith("x-")}


@app.task(bind=True)
def call_child(self, value):
    """Send a task from inside a task; return our ids and the child's id."""
    child = whoami.delay()
    request = self.request
    return {"id": request.id, "root_id": request.root_id, "child": child.id}


@app.task(bind=True)
def replace_with_sum(self, value, extra):
    """Replace this step with ``(value + extra) * 2`` computed by a small chain."""
    self.replace(add.s(value, extra) | mul.s(2))


@app.task(bind=True)
def replace_with_failure(self, value):
    self.replace(fail.si(value))


# -- routing, priorities, rate limits, revocation ----------------------------------------------


@app.task(bind=True, queue="flowq-semantics-declared")
def routed(self, kind):
    """Declared with ``queue=``; returns the queue it was consumed from."""
    push(kind, self.request.id)
    return self.request.delivery_info.get("routing_key")


@app.task(bind=True)
def route_by_glob(self, kind, lane=None):
    """Routed by a ``task_routes`` glob, or by ``lane`` through a router function."""
    push(kind, self.request.id)
    return self.request.delivery_info.get("routing_key")


@app.task(bind=True)
def queue_probe(self):
    """Returns the queue it was consumed from (matched by no route)."""
    return self.request.delivery_info.get("routing_key")


@app.task(bind=True)
def labelled(self, label, kind):
    """Record ``label`` (priority tests read the order of labels)."""
    push(kind, label)
    return label


@app.task(bind=True, rate_limit="2/s")
def rate_limited(self, kind):
    push(kind, f"{time.time():.6f}")
    return "limited"


@app.task(bind=True)
def unlimited(self, kind):
    push(kind, f"{time.time():.6f}")
    return "unlimited"


@app.task(bind=True)
def long_sleep(self, kind, seconds):
    """Record our pid, then sleep (a target for revoke/terminate)."""
    push(kind, os.getpid())
    time.sleep(seconds)
    push(f"{kind}:ends", self.request.id)
    return "woke up"
