"""Two Redis queue layouts prototyped side by side: Streams + consumer groups vs lists + Lua.

Both prototypes give the same guarantees (the ones flowq's Redis transport needs), so the
bench compares only what they cost:

* ``streams``: one stream per priority, one consumer group. Publish is ``XADD``; a consumer
  takes messages with ``XREADGROUP … COUNT n BLOCK`` (idle) or a Lua script that reads the
  streams highest priority first (busy); the server records each delivery in the group's
  pending list atomically, with its owner and delivery count. Acks are one script per
  batch (``XACK`` + ``XDEL``); a lease is the pending entry's idle time, renewed by the
  owner (``XCLAIM … JUSTID``) and taken over by others with ``XAUTOCLAIM``.
* ``lists``: one list per priority, a per-consumer in-flight hash and a heartbeat sorted
  set. Publish is a script (``LPUSH`` + a wake-up token, since a script cannot block); a
  consumer blocks on the token list (``BLPOP``), then a script moves up to n messages into
  its in-flight hash (``RPOP`` + ``HSET``, atomic); acks are ``HDEL`` per batch; a reaper
  script moves a dead consumer's hash back to the lists.

Each layout runs on a private ``redis-server`` started by the bench on a free port (so every
command counted is the bench's), in three phases:

1. *commands*: 2,000 messages published one by one while 2 consumer processes take and ack
   them; ``MONITOR`` counts every command by name, sent by a client or run inside a script;
2. *throughput*: 20,000 messages published in pipelined batches of 100 to a queue that 2
   consumers drain (messages per second, first publish to last ack);
3. *latency*: 500 single messages, each published when the previous one was acked, to one
   idle consumer (publish to receipt, p50/p95).

``--quick`` divides the sizes by 5. One JSON line per layout and phase. Nothing here is the
real transport (``flowq/runtime/transports/redis.py``): ``python -m bench redis_commands``
measures that one inside a real worker.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.harness import emit, latency_summary, parser, progress
from bench.redis_commands import CommandLog

NAME = "redis_layouts"
PRIORITIES = 10
GROUP = "g"
LEASE_MS = 10_000
BLOCK_MS = 1_000

# -- streams ---------------------------------------------------------------------------------

# KEYS: the queue's streams, highest priority first. ARGV: group, consumer, count.
_STREAM_FETCH = """
local out = {}
local want = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  if want <= 0 then break end
  local got = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', want,
                         'STREAMS', key, '>')
  if got then
    for _, entry in ipairs(got[1][2]) do
      out[#out + 1] = {i, entry[1], entry[2][2]}
      want = want - 1
    end
  end
end
return out
"""
# KEYS: streams. ARGV: group, then pairs (stream index, id).
_STREAM_ACK = """
for n = 2, #ARGV, 2 do
  local key = KEYS[tonumber(ARGV[n])]
  redis.call('XACK', key, ARGV[1], ARGV[n + 1])
  redis.call('XDEL', key, ARGV[n + 1])
end
return #ARGV / 2
"""
# KEYS: streams. ARGV: group, consumer. Renews the lease of everything the consumer holds.
_STREAM_RENEW = """
local renewed = 0
for _, key in ipairs(KEYS) do
  local held = redis.call('XPENDING', key, ARGV[1], '-', '+', 1000, ARGV[2])
  if #held > 0 then
    local args = {key, ARGV[1], ARGV[2], 0}
    for _, entry in ipairs(held) do args[#args + 1] = entry[1] end
    args[#args + 1] = 'JUSTID'
    redis.call('XCLAIM', unpack(args))
    renewed = renewed + #held
  end
end
return renewed
"""


class Streams:
    """The Streams layout: publish, take, ack, renew."""

    def __init__(self, client: redis.Redis, queue: str):
        self.client = client
        self.keys = [f"{{{queue}}}:s{p}" for p in reversed(range(PRIORITIES))]  # 9 first
        self.fetch_script = client.register_script(_STREAM_FETCH)
        self.ack_script = client.register_script(_STREAM_ACK)
        self.renew_script = client.register_script(_STREAM_RENEW)

    def declare(self) -> None:
        for key in self.keys:
            try:
                self.client.xgroup_create(key, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def publish(self, target: Any, payload: bytes, priority: int = 0) -> None:
        target.xadd(self.keys[PRIORITIES - 1 - priority], {"m": payload})

    def take(self, consumer: str, count: int, busy: bool) -> tuple[list[tuple[int, bytes, bytes]], bool]:
        """(entries, maybe more waiting)."""
        if busy:
            got = [(int(i) - 1, entry_id, body) for i, entry_id, body in
                   self.fetch_script(self.keys, [GROUP, consumer, count])]
            return got, len(got) == count
        reply = self.client.xreadgroup(GROUP, consumer, {key: ">" for key in self.keys},
                                       count=count, block=BLOCK_MS)
        entries: list[tuple[int, bytes, bytes]] = []
        full = False
        for key, items in reply or []:
            index = self.keys.index(key.decode())
            entries += [(index, entry_id, fields[b"m"]) for entry_id, fields in items]
            full = full or len(items) == count
        return entries, full

    def ack(self, consumer: str, held: list[tuple[int, bytes]]) -> None:
        if held:
            args: list[Any] = [GROUP]
            for index, entry_id in held:
                args += [index + 1, entry_id]
            self.ack_script(self.keys, args)

    def renew(self, consumer: str) -> None:
        self.renew_script(self.keys, [GROUP, consumer])


# -- lists -----------------------------------------------------------------------------------

# KEYS: list, bell. ARGV: entry. Pushes and rings the bell (one token at most).
_LIST_PUSH = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LPUSH', KEYS[2], '1')
redis.call('LTRIM', KEYS[2], 0, 0)
return 1
"""
# KEYS: in-flight hash, heartbeats, bell, lists highest priority first.
# ARGV: consumer, count, now (ms). Moves up to count entries into the in-flight hash.
_LIST_FETCH = """
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local out = {}
local want = tonumber(ARGV[2])
local more = false
for i = 4, #KEYS do
  if want > 0 then
    local got = redis.call('RPOP', KEYS[i], want)
    if got then
      for _, entry in ipairs(got) do
        local id = string.sub(entry, 1, 32)
        redis.call('HSET', KEYS[1], id, (i - 4) .. '|' .. entry)
        out[#out + 1] = {i - 4, id, string.sub(entry, 34)}
      end
      want = want - #got
    end
  end
  if want <= 0 and redis.call('LLEN', KEYS[i]) > 0 then more = true end
end
if more then
  redis.call('LPUSH', KEYS[3], '1')
  redis.call('LTRIM', KEYS[3], 0, 0)
end
return out
"""


class Lists:
    """The lists layout: publish, take, ack, renew."""

    def __init__(self, client: redis.Redis, queue: str):
        self.client = client
        self.queue = queue
        self.lists = [f"{{{queue}}}:l{p}" for p in reversed(range(PRIORITIES))]
        self.bell = f"{{{queue}}}:bell"
        self.beats = f"{{{queue}}}:beats"
        self.push_script = client.register_script(_LIST_PUSH)
        self.fetch_script = client.register_script(_LIST_FETCH)

    def held(self, consumer: str) -> str:
        return f"{{{self.queue}}}:held:{consumer}"

    def declare(self) -> None:
        pass  # lists appear on first push

    def publish(self, target: Any, payload: bytes, priority: int = 0) -> None:
        entry = uuid.uuid4().hex.encode() + b"|" + payload
        self.push_script([self.lists[PRIORITIES - 1 - priority], self.bell], [entry],
                         client=target)

    def take(self, consumer: str, count: int, busy: bool) -> tuple[list[tuple[int, bytes, bytes]], bool]:
        if not busy and self.client.blpop([self.bell], timeout=BLOCK_MS / 1000) is None:
            return [], False
        got = self.fetch_script([self.held(consumer), self.beats, self.bell, *self.lists],
                                [consumer, count, int(time.time() * 1000)])
        return [(int(i), entry_id, body) for i, entry_id, body in got], len(got) == count

    def ack(self, consumer: str, held: list[tuple[int, bytes]]) -> None:
        if held:
            self.client.hdel(self.held(consumer), *[entry_id for _, entry_id in held])

    def renew(self, consumer: str) -> None:
        self.client.zadd(self.beats, {consumer: int(time.time() * 1000)})


LAYOUTS = {"streams": Streams, "lists": Lists}


# -- the processes ---------------------------------------------------------------------------

def consume(layout_name: str, url: str, queue: str, count: int, stop_key: str) -> None:
    """A consumer process: take up to ``count``, ack the batch, renew the lease each second;
    ledger: INCRBY ``<queue>:done`` (outside the layout's keys, not counted as its cost)."""
    client = redis.Redis.from_url(url)
    layout = LAYOUTS[layout_name](client, queue)
    consumer = f"c-{os.getpid()}"
    busy = False
    next_renew = time.monotonic() + 1.0
    while not client.exists(stop_key):
        entries, busy = layout.take(consumer, count, busy)
        if entries:
            layout.ack(consumer, [(index, entry_id) for index, entry_id, _ in entries])
            client.incrby(f"{queue}:done", len(entries))
        if time.monotonic() >= next_renew:
            layout.renew(consumer)
            next_renew = time.monotonic() + 1.0


class PrivateServer:
    """A redis-server on a free loopback port, in a temporary directory, stopped by pid."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.dir = Path(tempfile.mkdtemp(prefix="flowq-bench-layouts-"))
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def run_phase(layout_name: str, url: str, messages: int, batch: int, consumers: int,
              count: int = 8) -> float:
    """Publish ``messages`` (``batch`` per pipeline) to ``consumers`` processes; return the
    seconds from the first publish to the last ack."""
    client = redis.Redis.from_url(url)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    stop_key = f"{queue}:stop"
    layout = LAYOUTS[layout_name](client, queue)
    layout.declare()
    context = multiprocessing.get_context("fork")
    procs = [context.Process(target=consume, args=(layout_name, url, queue, count, stop_key))
             for _ in range(consumers)]
    for proc in procs:
        proc.start()
    time.sleep(0.5)  # consumers blocked, waiting
    payload = b"x" * 400  # about a trivial task's kombu envelope
    started = time.perf_counter()
    for first in range(0, messages, batch):
        if batch == 1:  # one command per message, as a lone delay() sends it
            layout.publish(client, payload)
            continue
        pipe = client.pipeline(transaction=False)
        for _ in range(min(batch, messages - first)):
            layout.publish(pipe, payload)
        pipe.execute()
    while int(client.get(f"{queue}:done") or 0) < messages:
        time.sleep(0.002)
    seconds = time.perf_counter() - started
    client.set(stop_key, 1)
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
    return seconds


def latency(layout_name: str, url: str, samples: int) -> list[float]:
    """Publish one message at a time to one idle consumer; publish-to-receipt seconds."""
    client = redis.Redis.from_url(url)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    layout = LAYOUTS[layout_name](client, queue)
    layout.declare()
    consumer_client = redis.Redis.from_url(url)
    consumer = LAYOUTS[layout_name](consumer_client, queue)
    seconds: list[float] = []
    context = multiprocessing.get_context("fork")
    reader, writer = context.Pipe(duplex=False)

    def receive() -> None:
        for _ in range(samples):
            entries: list[Any] = []
            while not entries:
                entries, _ = consumer.take("lat", 8, False)
            writer.send(time.time())
            consumer.ack("lat", [(index, entry_id) for index, entry_id, _ in entries])

    proc = context.Process(target=receive)
    proc.start()
    time.sleep(0.3)
    for _ in range(samples):
        sent = time.time()
        layout.publish(client, b"x" * 400)
        seconds.append(reader.recv() - sent)
        time.sleep(0.002)  # let the consumer block again
    proc.join(5)
    return seconds


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    options = parse.parse_args(argv)
    scale = 5 if options.quick else 1
    if shutil.which("redis-server") is None:
        progress("redis_layouts needs redis-server on PATH")
        return 2
    for name in LAYOUTS:
        server = PrivateServer()
        try:
            progress(f"{name}: counting commands for {2000 // scale} messages")
            with CommandLog(server.url, 0) as log:
                run_phase(name, server.url, 2000 // scale, 1, 2)
            layout_keys = Counter(command for source, command in log.entries
                                  if command not in ("INCRBY", "GET", "EXISTS", "SET"))
            sent = Counter(command for source, command in log.entries if source != "lua"
                           and command not in ("INCRBY", "GET", "EXISTS", "SET"))
            tasks = 2000 // scale
            emit(NAME, f"{name}: commands", layout=name, messages=tasks,
                 sent_commands_per_message=round(sum(sent.values()) / tasks, 2),
                 all_commands_per_message=round(sum(layout_keys.values()) / tasks, 2),
                 sent_commands={k: round(v / tasks, 3) for k, v in sent.most_common()})
            progress(f"{name}: throughput of {20000 // scale} messages")
            seconds = run_phase(name, server.url, 20000 // scale, 100, 2)
            emit(NAME, f"{name}: throughput", layout=name, messages=20000 // scale,
                 seconds=round(seconds, 3), messages_per_s=round(20000 // scale / seconds, 1))
            progress(f"{name}: latency over {500 // scale} messages")
            emit(NAME, f"{name}: latency", layout=name, samples=500 // scale,
                 **latency_summary(latency(name, server.url, 500 // scale)))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
