"""The app every bench sends to and runs workers for; configured from the environment.

``FLOWQ_BROKER_URL`` / ``FLOWQ_RESULT_BACKEND`` pick the servers (unset: the embedded
default under ``FLOWQ_BENCH_DATA``), ``FLOWQ_BENCH_QUEUE`` the queue and
``FLOWQ_BENCH_SETTINGS`` (JSON) any other setting.

Bytes counting (the ``bytes`` bench): when a :class:`ByteTally` is set on the app, or
``FLOWQ_BENCH_BYTES=<redis url>#<hash key>`` is set in a worker's environment, every
message this process's publisher puts on a queue is measured after it is sent: its
headers as compact JSON plus its body as bytes. The worker adds its counts to the Redis
hash; the producer keeps its own in memory. flowq's code is untouched: :class:`BenchApp`
wraps ``send_now`` on the one publisher object its runtime creates.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import redis

from bench.ledger import tick_ledger
from flowq import Flowq
from flowq.runtime.message import Outgoing

FIELDS = ("messages", "header_bytes", "body_bytes", "wf_inline_bytes", "wf_ref_messages")


def measure(message: Outgoing) -> dict[str, int]:
    """Sizes of one message as flowq serializes it (headers compact JSON, body bytes)."""
    headers = message.headers
    inline = headers.get("wf")
    return {
        "messages": 1,
        "header_bytes": len(json.dumps(headers, separators=(",", ":"), default=str).encode()),
        "body_bytes": len(message.body),
        "wf_inline_bytes": 0 if inline is None else len(
            json.dumps(inline, separators=(",", ":"), ensure_ascii=False).encode()),
        "wf_ref_messages": 1 if headers.get("wf_ref") else 0,
    }


class ByteTally:
    """Adds the sizes of sent messages up, in memory or in a Redis hash."""

    def __init__(self, target: str | None = None):
        self.totals = dict.fromkeys(FIELDS, 0)
        self._client: redis.Redis | None = None
        self._key = ""
        if target:
            url, _, self._key = target.partition("#")
            self._client = redis.Redis.from_url(url)

    def add(self, messages: Sequence[Outgoing]) -> None:
        batch = dict.fromkeys(FIELDS, 0)
        for message in messages:
            for field, size in measure(message).items():
                batch[field] += size
        if self._client is None:
            for field, size in batch.items():
                self.totals[field] += size
            return
        pipe = self._client.pipeline(transaction=False)
        for field, size in batch.items():
            pipe.hincrby(self._key, field, size)
        pipe.execute()


class BenchApp(Flowq):
    """A Flowq app whose runtime's publisher can count what it sends."""

    byte_tally: ByteTally | None = None

    @property
    def runtime(self) -> Any:
        runtime = Flowq.runtime.fget(self)  # type: ignore[attr-defined]
        publisher = runtime.publisher
        tally = self.byte_tally
        if tally is not None and "send_now" not in vars(publisher):
            send_now = publisher.send_now

            def counted(messages: Sequence[Outgoing]) -> None:
                send_now(messages)
                tally.add(messages)

            publisher.send_now = counted  # this instance only; publish() calls self.send_now
        return runtime


app = BenchApp(
    "bench",
    task_default_queue=os.environ.get("FLOWQ_BENCH_QUEUE", "flowq-bench"),
    data_dir=os.environ.get("FLOWQ_BENCH_DATA", ".flowq"),
    **json.loads(os.environ.get("FLOWQ_BENCH_SETTINGS") or "{}"),
)
if os.environ.get("FLOWQ_BENCH_BYTES"):
    app.byte_tally = ByteTally(os.environ["FLOWQ_BENCH_BYTES"])


@app.task
def add(x, y):
    return x + y


@app.task
def tsum(numbers):
    return sum(numbers)


@app.task
def noop():
    return None


@app.task
def stamp():
    """When the task started running (epoch seconds), for pickup latency."""
    return time.time()


@app.task(ignore_result=True)
def tick():
    """Count one run in the ledger (the compare bench's drain ignores results)."""
    tick_ledger()


@app.task(bind=True)
def report(self, steps):
    """Record ``steps`` progress states (``update_state``), then return ``steps``."""
    for step in range(steps):
        self.update_state(state="PROGRESS", meta={"current": step, "total": steps})
    return steps


@app.task
def fail_on(value, broken):
    """Fail for the values in ``broken`` (the resume case of bench.observe_commands)."""
    if value in broken:
        raise ValueError(f"{value} is broken")
    return value
