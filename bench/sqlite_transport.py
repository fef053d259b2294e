"""Throughput and pickup latency of the SQLite broker transport; prints one JSON line.

    python bench/sqlite_transport.py [--messages 10000] [--latency-samples 100]

publish_per_s: one process publishing to a declared queue, one message per call.
consume_per_s: one consumer (prefetch 100) draining that queue, acking each message.
latency p50/p95: a consumer idling in another process; the time from just before publish
to the consumer's callback, one message at a time with idle gaps between.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kombu import Connection, Consumer, Producer, Queue
from kombu.message import Message

from flowq.runtime.transports.sqlite import Transport

SPAWN = multiprocessing.get_context("spawn")
BODY = {"task": "bench.noop", "args": [1, 2], "kwargs": {}, "id": "x" * 36}


def connect(db: Path) -> Connection:
    return Connection(f"sqlite:///{db}", transport=Transport)


def publish_rate(db: Path, count: int) -> float:
    """Messages per second published by one producer."""
    with connect(db) as conn:
        producer = Producer(conn.channel(), routing_key="bench", auto_declare=False)
        started = time.perf_counter()
        for _ in range(count):
            producer.publish(BODY)
        return count / (time.perf_counter() - started)


def consume_rate(db: Path, count: int) -> float:
    """Messages per second consumed and acked by one consumer."""
    done = 0

    def on_message(body: Any, message: Message) -> None:
        nonlocal done
        done += 1
        message.ack()

    queues = [Queue("bench")]
    with connect(db) as conn, Consumer(conn, queues, callbacks=[on_message], prefetch_count=100):
        started = time.perf_counter()
        while done < count:
            conn.drain_events(timeout=5)
        return count / (time.perf_counter() - started)


def _idle_consumer(db: Path, count: int, ready: Any, report: Any) -> None:
    """Child: report, per message, callback time minus the publisher's timestamp."""
    latencies: list[float] = []

    def on_message(body: Any, message: Message) -> None:
        latencies.append(time.time() - body["sent_at"])
        message.ack()

    with connect(db) as conn, Consumer(conn, [Queue("latency")], callbacks=[on_message]):
        ready.set()
        deadline = time.monotonic() + 120
        while len(latencies) < count and time.monotonic() < deadline:
            try:
                conn.drain_events(timeout=1)
            except TimeoutError:
                pass
    report.put(latencies)


def pickup_latencies(db: Path, count: int) -> list[float]:
    """Latencies of ``count`` messages picked up by an idle consumer in another process."""
    ready, report = SPAWN.Event(), SPAWN.Queue()
    child = SPAWN.Process(target=_idle_consumer, args=(db, count, ready, report))
    child.start()
    try:
        if not ready.wait(timeout=30):
            raise RuntimeError("latency consumer did not start")
        with connect(db) as conn:
            producer = Producer(conn.channel(), routing_key="latency", auto_declare=False)
            for _ in range(count):
                time.sleep(0.05)
                producer.publish({"sent_at": time.time()})
        latencies: list[float] = report.get(timeout=120)
    finally:
        child.join(timeout=30)
    return latencies


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=100)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "broker.db"
        with connect(db) as conn:
            for name in ("bench", "latency"):
                Queue(name)(conn.channel()).declare()
        published = publish_rate(db, args.messages)
        consumed = consume_rate(db, args.messages)
        latencies = pickup_latencies(db, args.latency_samples)
    print(
        json.dumps(
            {
                "messages": args.messages,
                "publish_per_s": round(published),
                "consume_per_s": round(consumed),
                "latency_p50_ms": round(statistics.median(latencies) * 1000, 1),
                "latency_p95_ms": round(statistics.quantiles(latencies, n=20)[18] * 1000, 1),
                "sqlite": sqlite3.sqlite_version,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
