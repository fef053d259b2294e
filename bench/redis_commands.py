"""Redis commands per task for a batch of 1,000 single tasks (Redis broker + Redis backend).

The batch: 1,000 ``add.delay(i, i)`` from this process to a warmed-up worker, then one
``backend.wait(ids)`` for all the results (what ``GroupResult.get()`` does).

Counted with ``MONITOR``, which names each command's database and client port, so only
the bench's private database counts and every command is attributed to a side: the
producer (this process's sockets), the worker (sockets of the worker and its pool
children, found in /proc) or ``lua`` (commands run inside a script: EVALSHA counts once
as sent, and each ``redis.call`` in it counts again). The worker's idle housekeeping
(delay-index sweeps, revocation refreshes, blocking-read timeouts) is measured for a few seconds
first and reported apart; ``worker_marginal`` subtracts it over the batch's duration.

Cross-check: ``commandstats_per_task`` is the ``INFO commandstats`` delta over the same
window. It is global to the server: it includes other databases and clients, so it is
only meaningful when nothing else uses this Redis (``other_clients`` counts the open
connections that are neither the bench's nor its worker's). Run this bench alone.
MONITOR slows Redis down: don't read the timings of this run.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from bench.harness import Stack, Worker, emit, parser, progress

NAME = "redis_commands"


def tcp_ports(pids: list[int]) -> set[int]:
    """Local TCP ports of the sockets open in ``pids`` (Linux /proc)."""
    inodes: set[str] = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = fd.readlink().as_posix()
            except OSError:
                continue
            match = re.fullmatch(r"socket:\[(\d+)\]", target)
            if match:
                inodes.add(match.group(1))
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class CommandLog:
    """MONITOR in a thread, keeping (client port or 'lua', command name) for one database."""

    def __init__(self, url: str, db: int):
        self.db = db
        self.marker = f"flowq-bench-stop-{uuid.uuid4().hex}"
        self.entries: list[tuple[str, str]] = []
        self._url = url
        self._client = redis.Redis.from_url(url)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self._client.monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                if command is None:
                    continue
                if self.marker in command["command"]:
                    return
                if command["db"] == self.db:
                    name = command["command"].split(" ", 1)[0].upper()
                    source = "lua" if command["client_type"] == "lua" else command["client_port"]
                    self.entries.append((source, name))

    def __enter__(self) -> CommandLog:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        redis.Redis.from_url(self._url).echo(self.marker)  # any db: MONITOR sees every db
        self._thread.join(30)
        self._client.close()


def split(entries: list[tuple[str, str]], producer: set[int], worker: set[int]
          ) -> dict[str, Counter[str]]:
    """Command counts by side; a script's inner commands go to ``lua``."""
    sides: dict[str, Counter[str]] = {"producer": Counter(), "worker": Counter(),
                                      "lua": Counter(), "other": Counter()}
    for source, name in entries:
        if source == "lua":
            side = "lua"
        elif source.isdigit() and int(source) in producer:
            side = "producer"
        elif source.isdigit() and int(source) in worker:
            side = "worker"
        else:
            side = "other"
        sides[side][name] += 1
    return sides


def commandstats_total(client: redis.Redis) -> int:
    return sum(int(stats["calls"]) for stats in client.info("commandstats").values())


def worker_pids(worker: Worker) -> list[int]:
    return [worker.pid, *worker.children()]


def per_task(counts: Counter[str], tasks: int) -> dict[str, float]:
    return {name: round(count / tasks, 3) for name, count in counts.most_common()}


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--tasks", type=int, help="tasks in the batch (default 1,000; --quick 200)")
    parse.add_argument("--idle", type=float, help="seconds of idle baseline (default 3)")
    options = parse.parse_args(argv)
    tasks = options.tasks or (200 if options.quick else 1_000)
    idle_seconds = options.idle or (1.0 if options.quick else 3.0)
    from bench.app import add

    with Stack(NAME, options) as stack:
        progress(f"starting a worker (-c {options.concurrency}) on {stack.queue}")
        worker = stack.start_worker()
        for i in range(20):  # warm-up: both children connected, queues declared
            add.delay(i, i).get(timeout=30)
        server = stack.redis
        progress(f"idle baseline for {idle_seconds}s (MONITOR on db {options.redis_db})")
        with CommandLog(options.redis_url, options.redis_db) as idle:
            time.sleep(idle_seconds)
        progress(f"batch of {tasks} add.delay(i, i), then one wait for all results")
        stats_before = commandstats_total(server)
        with CommandLog(options.redis_url, options.redis_db) as batch:
            started = time.perf_counter()
            ids = [add.delay(i, i).id for i in range(tasks)]
            published = time.perf_counter()
            stack.app.backend.wait(ids, timeout=120)
            seconds = time.perf_counter() - started
        stats_delta = commandstats_total(server) - stats_before
        producer_ports = tcp_ports([os.getpid()])
        worker_ports = tcp_ports(worker_pids(worker))
        other_clients = sum(1 for client in server.client_list()
                            if int(client["addr"].rsplit(":", 1)[1])
                            not in producer_ports | worker_ports)
        idle_sides = split(idle.entries, producer_ports, worker_ports)
        sides = split(batch.entries, producer_ports, worker_ports)
        failed = stack.failures(ids)
        idle_rate = (sum(idle_sides["worker"].values()) + sum(idle_sides["lua"].values())
                     ) / idle_seconds
        total = sum(sum(side.values()) for side in sides.values())
        sent = sum(sides["producer"].values()) + sum(sides["worker"].values())
        marginal = sum(sides["worker"].values()) + sum(sides["lua"].values()) - idle_rate * seconds
        fields: dict[str, Any] = {
            "tasks": tasks, "failed": failed, "batch_s": round(seconds, 3),
            "publish_s": round(published - started, 3),
            "commands_per_task": round(total / tasks, 2),
            "sent_commands_per_task": round(sent / tasks, 2),
            "producer_per_task": round(sum(sides["producer"].values()) / tasks, 2),
            "worker_per_task": round(sum(sides["worker"].values()) / tasks, 2),
            "lua_inner_per_task": round(sum(sides["lua"].values()) / tasks, 2),
            "unattributed": sum(sides["other"].values()),
            "worker_idle_commands_per_s": round(idle_rate, 1),
            "worker_marginal_per_task": round(marginal / tasks, 2),
            "producer_commands": per_task(sides["producer"], tasks),
            "worker_commands": per_task(sides["worker"], tasks),
            "lua_commands": per_task(sides["lua"], tasks),
            "worker_idle_commands": dict(idle_sides["worker"].most_common()),
            "commandstats_per_task": round(stats_delta / tasks, 2),
            "commandstats_note": "server-wide INFO commandstats delta; counts every db and "
                                 "client, includes MONITOR's own stop marker",
            "other_clients": other_clients,  # connections to this Redis that are not ours
        }
        progress(f"{fields['commands_per_task']} commands/task "
                 f"({fields['sent_commands_per_task']} sent by clients)")
        emit(NAME, f"batch of {tasks} add.delay(i, i) + one wait", **stack.description, **fields)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
