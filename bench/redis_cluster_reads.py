"""Blocking reads across queues on a Redis Cluster: one read per queue, or a short poll.

One ``XREADGROUP`` may not span hash slots and each queue lives in a slot of its own, so
a consumer of several queues on a cluster cannot wait on all of them with one command.
Two ways out, measured side by side on a private 3-master cluster the bench starts
(loopback ports, stopped by pid at the end):

* ``per-queue reads``: flowq's transport (``flowq/runtime/transports/redis_cluster.py``)
  through kombu: one blocking read per queue, each on a connection of its own to its
  queue's master, all waited on at once;
* ``short poll``: a prototype here, one connection reading the queues in turn, each with
  ``XREADGROUP … BLOCK <slice>`` (``--slice-ms``, default 50).

For 1 and 3 queues (on three masters): the pickup latency (publish to delivery, p50/p95)
of messages published one at a time, at random moments, to a random queue while the
consumer waits; and the idle cost, the commands per second the consumer sends when there
is nothing to read (``INFO commandstats`` over every master, nothing else uses them).
``--quick`` sends 20 messages per case instead of 100. One JSON line per case.
"""

from __future__ import annotations

import base64
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from kombu import Connection, Consumer, Exchange, Producer, Queue
from kombu.utils.json import loads

import flowq.runtime  # noqa: F401 - registers flowq's transports with kombu
from bench.harness import emit, latency_summary, parser, progress
from flowq.runtime.keys import BrokerKeys
from flowq.runtime.transports import envelope
from flowq.runtime.transports.redis_streams import StreamQueues
from tests.redis_cluster import RedisClusterServers

NAME = "redis_cluster_reads"
IDLE_SECONDS = 3.0


def spread_queues(servers: RedisClusterServers, count: int) -> list[str]:
    """``count`` new queue names whose keys live on ``count`` different masters."""
    client = servers.client()
    token = uuid.uuid4().hex[:8]
    by_master: dict[str, str] = {}
    for n in range(1000):
        name = f"bench-{token}-{n}"
        by_master.setdefault(client.get_node_from_key(BrokerKeys().stream(name, 0)).name, name)
        if len(by_master) == count:
            break
    client.close()
    return list(by_master.values())


def kombu_queue(name: str) -> Queue:
    return Queue(name, Exchange(name, "direct"), routing_key=name)


def idle_commands_per_s(servers: RedisClusterServers, seconds: float = IDLE_SECONDS) -> float:
    """Commands per second all masters run while the consumer (already waiting) idles."""
    clients = [redis.Redis(port=port) for port in servers.ports]
    for client in clients:
        client.config_resetstat()
    time.sleep(seconds)
    calls = 0
    for client in clients:
        stats = client.info("commandstats")
        calls += sum(entry["calls"] for name, entry in stats.items()
                     if not name.startswith(("cmdstat_config", "cmdstat_info")))
        client.close()
    return calls / seconds


def measure(servers: RedisClusterServers, queues: list[str], messages: int,
            consume: Callable[[threading.Event, Callable[[float], None]], None]) -> dict[str, Any]:
    """Run ``consume`` (until told to stop) while messages arrive one at a time."""
    with Connection(servers.url) as connection:
        for name in queues:
            kombu_queue(name)(connection.channel()).declare()
    received: list[float] = []
    arrived = threading.Semaphore(0)

    def got(sent_at: float) -> None:
        received.append(time.perf_counter() - sent_at)
        arrived.release()

    stop = threading.Event()
    consumer = threading.Thread(target=consume, args=(stop, got), daemon=True)
    consumer.start()
    time.sleep(1.0)  # consuming, with its reads in flight
    idle = idle_commands_per_s(servers)
    with Connection(servers.url) as connection:
        producer = Producer(connection.channel())
        for _ in range(messages):
            time.sleep(random.uniform(0.005, 0.025))  # the consumer is waiting
            name = random.choice(queues)
            producer.publish({"sent": time.perf_counter()}, exchange=name, routing_key=name)
            if not arrived.acquire(timeout=10):
                raise RuntimeError(f"a message to {name} was not picked up within 10 s")
    stop.set()
    consumer.join(10)
    return {"queues": len(queues), "messages": messages,
            "idle_commands_per_s": round(idle, 1), **latency_summary(received)}


def per_queue_reads(servers: RedisClusterServers, queues: list[str]) -> Callable[..., None]:
    def consume(stop: threading.Event, got: Callable[[float], None]) -> None:
        with Connection(servers.url) as connection:
            def on_message(body: Any, message: Any) -> None:
                message.ack()
                got(body["sent"])

            with Consumer(connection.channel(), [kombu_queue(q) for q in queues],
                          callbacks=[on_message], accept=["json"]):
                while not stop.is_set():
                    try:
                        connection.drain_events(timeout=0.5)
                    except TimeoutError:
                        pass
    return consume


def short_poll(servers: RedisClusterServers, queues: list[str],
               slice_ms: int) -> Callable[..., None]:
    def consume(stop: threading.Event, got: Callable[[float], None]) -> None:
        client = servers.client()
        streams = StreamQueues(client, BrokerKeys())
        consumer = f"poll-{uuid.uuid4().hex[:6]}"
        while not stop.is_set():
            for queue in queues:
                command, keys = streams.read_command([queue], consumer, 10, slice_ms)
                # (redis-py's client parses each entry's fields into a dict)
                for key, items in client.execute_command(*command) or ():
                    for entry_id, fields in items:
                        streams.take(queue, consumer, 0, 0, [(keys[key][1], entry_id)])
                        if b"m" in fields:  # (not a wake-up entry)
                            got(loads(base64.b64decode(envelope.decode(fields[b"m"])["body"]))
                                ["sent"])
        client.close()
    return consume


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--slice-ms", type=int, default=50,
                       help="how long the short poll blocks on each queue in turn")
    options = parse.parse_args(argv)
    messages = 20 if options.quick else 100
    servers = RedisClusterServers(Path(tempfile.mkdtemp(prefix="flowq-bench-cluster-")))
    progress(f"starting a 3-master cluster on ports {servers.ports}")
    servers.start()
    try:
        for count in (1, 3):
            queues = spread_queues(servers, count)
            progress(f"per-queue reads, {count} queue(s): {messages} messages")
            emit(NAME, f"per-queue reads, {count} queue(s)", approach="per-queue reads",
                 **measure(servers, queues, messages, per_queue_reads(servers, queues)))
            queues = spread_queues(servers, count)
            progress(f"short poll ({options.slice_ms} ms), {count} queue(s): {messages} messages")
            emit(NAME, f"short poll, {count} queue(s)", approach="short poll",
                 slice_ms=options.slice_ms,
                 **measure(servers, queues, messages,
                           short_poll(servers, queues, options.slice_ms)))
    finally:
        servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
