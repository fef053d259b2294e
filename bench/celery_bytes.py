"""Bytes Celery publishes for the chain of 1,000 and the chord of 10,000 of ``bench bytes``.

Runs Celery itself, in an environment of its own (flowq does not depend on it)::

    python -m venv /tmp/celery-env && /tmp/celery-env/bin/pip install celery redis
    /tmp/celery-env/bin/python bench/celery_bytes.py [--chain 1000] [--chord 10000]

No worker runs. Every message's body (as Celery's JSON serializer writes it) and headers
(compact JSON, as ``bench bytes`` counts flowq's) are counted in the
``before_task_publish`` signal. The chain's later messages are published by Celery's
workers; each carries the steps still ahead, exactly what ``chain(*steps[k:])`` sends,
so the chain is sent once from every step k. The chord is sent once, as a Redis result
backend sends it (every header message carries the body). Keys and queues live in Redis
database ``--db`` (default 13) and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import json
import sys
import uuid
from typing import Any

import redis
from celery import Celery, chain, chord
from celery.signals import before_task_publish
from kombu.serialization import dumps

TALLY = {"messages": 0, "bytes": 0}


@before_task_publish.connect
def _count(body: Any = None, headers: Any = None, **_: Any) -> None:
    _, _, data = dumps(body, serializer="json")
    TALLY["messages"] += 1
    TALLY["bytes"] += len(data if isinstance(data, bytes) else data.encode()) + len(
        json.dumps(headers, separators=(",", ":"), default=str))


def emit(case: str, **fields: Any) -> None:
    print(json.dumps({"bench": "celery_bytes", "case": case, **fields}), flush=True)


def main(argv: list[str]) -> int:
    parse = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parse.add_argument("--chain", type=int, default=1000)
    parse.add_argument("--chord", type=int, default=10000)
    parse.add_argument("--db", type=int, default=13)
    options = parse.parse_args(argv)
    url = f"redis://127.0.0.1:6379/{options.db}"
    app = Celery("celery_bytes", broker=url, backend=url)
    app.conf.task_default_queue = f"celery-bytes-{uuid.uuid4().hex[:8]}"

    @app.task(name="bench.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(name="bench.tsum")
    def tsum(values: list[int]) -> int:
        return sum(values)

    steps = [add.s(0, 0), *(add.s(i) for i in range(1, options.chain))]
    for k in range(len(steps)):
        chain(*steps[k:]).apply_async()
    emit(f"chain of {options.chain:,} add.s(i)", celery_bytes=TALLY["bytes"],
         messages=TALLY["messages"], bytes_per_task=round(TALLY["bytes"] / len(steps)))
    TALLY.update(messages=0, bytes=0)
    chord([add.s(i, i) for i in range(options.chord)], tsum.s()).apply_async()
    emit(f"chord of {options.chord:,} add.s(i, i) + tsum.s()", celery_bytes=TALLY["bytes"],
         header_messages=TALLY["messages"],
         bytes_per_task=round(TALLY["bytes"] / TALLY["messages"]))
    client = redis.Redis.from_url(url)
    for key in client.scan_iter(match="*", count=1000):  # this bench's own database
        client.delete(key)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)  # Celery's result handles would try to unsubscribe during interpreter exit
