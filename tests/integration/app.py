"""The app integration tests run workers for; configured from the environment.

``FLOWQ_BROKER_URL`` / ``FLOWQ_RESULT_BACKEND`` pick the servers, ``FLOWQ_TEST_QUEUE``
the queue, ``FLOWQ_TEST_DATA`` the embedded default's directory and
``FLOWQ_TEST_LEDGER`` the Redis URL + key prefix of the side-effect ledger.
"""

from __future__ import annotations

import os
import time

import redis

from flowq import Flowq

app = Flowq(
    "integration",
    task_default_queue=os.environ.get("FLOWQ_TEST_QUEUE", "flowq"),
    data_dir=os.environ.get("FLOWQ_TEST_DATA", ".flowq"),
    worker_prefetch_multiplier=int(os.environ.get("FLOWQ_TEST_PREFETCH", "4")),
    result_expires=float(os.environ.get("FLOWQ_TEST_RESULT_EXPIRES", "3600")),
    security_key=os.environ.get("FLOWQ_TEST_SECURITY_KEY") or None,
    control_exchange=os.environ.get("FLOWQ_TEST_CONTROL", "flowq"),
    accept_content=os.environ.get("FLOWQ_TEST_ACCEPT", "json").split(","),
    result_serializer=os.environ.get("FLOWQ_TEST_RESULT_SERIALIZER", "json"),
    broker_connection_max_retries=int(os.environ.get("FLOWQ_TEST_CONNECT_RETRIES", "5")),
    worker_autoscale_keepalive=float(os.environ.get("FLOWQ_TEST_AUTOSCALE_KEEPALIVE", "30")),
    # FLOWQ_TEST_ACKS_LATE=1: the global acks_late and reject_on_worker_lost settings
    task_acks_late=os.environ.get("FLOWQ_TEST_ACKS_LATE") == "1",
    task_reject_on_worker_lost=os.environ.get("FLOWQ_TEST_ACKS_LATE") == "1",
)

_ledger_url, _, LEDGER_PREFIX = os.environ.get(
    "FLOWQ_TEST_LEDGER", "redis://127.0.0.1:6379/15#flowq-test:").partition("#")
_ledger = None


def ledger() -> redis.Redis:
    """The Redis client tasks write their side effects to (one per process)."""
    global _ledger
    if _ledger is None:
        _ledger = redis.Redis.from_url(_ledger_url)
    return _ledger


def record(kind: str, value: str) -> None:
    ledger().rpush(f"{LEDGER_PREFIX}{kind}", value)


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def tsum(numbers):
    return sum(numbers)


@app.task
def identity(value):
    return value


@app.task
def ping():
    return "pong"


@app.task
def fail(*args):
    raise ValueError(f"expected failure {args!r}")


@app.task(bind=True)
def note(self, value, kind="runs"):
    """Record that this task ran (with its id) and pass ``value`` on."""
    record(kind, f"{self.request.id}")
    return value


@app.task(bind=True)
def collect(self, values, kind="bodies"):
    """A chord body that records each run, to count bodies exactly."""
    record(kind, self.request.id)
    return values


@app.task
def errback(failed_id, kind="errbacks"):
    record(kind, failed_id)
    return failed_id


@app.task
def make_list(n):
    return list(range(n))


@app.task
def square(x):
    return x * x


@app.task(bind=True)
def phase(self, value, name):
    """Record (name, time) to check phase ordering."""
    record("phases", f"{name}:{time.time():.6f}")
    return value


@app.task(bind=True)
def whoami(self, *args):
    """Return the ids this task sees for itself."""
    request = self.request
    return {"id": request.id, "root_id": request.root_id, "parent_id": request.parent_id,
            "group": request.group, "group_index": request.group_index}


@app.task
def sleep(seconds, value=None):
    time.sleep(seconds)
    return value


@app.task
def gate(token, value=None):
    """Run until the test opens gate ``token`` (``Cluster.open_gate``; at most 60 s), then
    return ``value``: a task that is surely still running while the test looks at it,
    however slow the machine, where a fixed sleep would race."""
    deadline = time.monotonic() + 60
    while not ledger().exists(f"{LEDGER_PREFIX}gate:{token}"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"gate {token} was never opened")
        time.sleep(0.01)
    return value


# -- beat tests -------------------------------------------------------------------------------

import json  # noqa: E402 - appended section


@app.task
def remember(value, kind="values"):
    """Record ``value`` itself: beat tests send each beat's name to see who sent a run."""
    record(kind, str(value))
    return value


# FLOWQ_TEST_BEAT: a beat_schedule as JSON (schedules in seconds), set per beat process.
app.conf.beat_schedule = json.loads(os.environ.get("FLOWQ_TEST_BEAT", "{}"))
from tests.integration import semantics_tasks  # noqa: E402,F401
from tests.integration import signal_receivers  # noqa: E402,F401
from tests.reliability import fault_tasks  # noqa: E402,F401


# -- operations tests -------------------------------------------------------------------------

import logging  # noqa: E402 - appended section


@app.task
def shout(message):
    """Log ``message`` from the process running the task (per-process log files)."""
    logging.getLogger("tests.shout").warning("shout: %s", message)
    return message


# -- observability tests ----------------------------------------------------------------------

from tests.integration import observe_tasks  # noqa: E402,F401

# -- worker command-line tests ----------------------------------------------------------------


@app.task
def pid_after_allocating(mebibytes=0):
    """Take ``mebibytes`` of resident memory for a moment; return this process's pid
    (``--max-memory-per-child`` replaces the process after such a task)."""
    block = b"\x01" * (mebibytes * 1024 * 1024)
    del block
    return os.getpid()


# -- Celery-compatibility tests ---------------------------------------------------------------

from tests.integration import compat_tasks  # noqa: E402,F401
