"""Backend commands per task transition with tracking, with and without the dashboard open.

Workload (Redis broker + Redis backend, a private database): chords of ``--width`` ``add``
parts and a ``tsum`` body, sent from this process and waited for, twice: once with no
dashboard, once with ``flowq dashboard`` running and a poller playing an open browser
(``/api/workflows/<root>`` every second for the chord being run, as the workflow page does,
and ``/api/workflows`` every 2 s, as the list does).

A *transition* is one node's first terminal record (what the tracked progress counts: the
parts, the join and the body of each chord). Commands are counted with ``MONITOR`` in the
bench's database and attributed by client port (see ``bench/redis_commands.py``): commands
the worker sends; commands run inside scripts (``lua``), among them those on the tracked
progress hashes (``wf:p:``); the producer's; the dashboard's. Tracking's own cost is the
progress-hash commands (inside the store script, so no extra round trip) and, per workflow
sent, the summary and index writes. MONITOR slows Redis: don't read the timings.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any, Self

import httpx
import redis

from bench.harness import ROOT, Stack, emit, parser, progress
from bench.redis_commands import tcp_ports, worker_pids

NAME = "tracking"
PROGRESS_KEY = ":wf:p:"


class Commands:
    """MONITOR in a thread: (client port or 'lua', command name, touches a progress hash)."""

    def __init__(self, url: str, db: int):
        self.db = db
        self.marker = f"flowq-bench-stop-{uuid.uuid4().hex}"
        self.entries: list[tuple[str, str, bool]] = []
        self._url = url
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with redis.Redis.from_url(self._url).monitor() as monitor:
            self._ready.set()
            for command in monitor.listen():
                text = command["command"]
                if self.marker in text:
                    return
                if command["db"] == self.db:
                    source = "lua" if command["client_type"] == "lua" else command["client_port"]
                    self.entries.append((source, text.split(" ", 1)[0].upper(),
                                         PROGRESS_KEY in text))

    def __enter__(self) -> Self:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        redis.Redis.from_url(self._url).echo(self.marker)
        self._thread.join(30)

    def count(self, sides: dict[str, set[int]]) -> Counter[str]:
        """Commands per side; ``lua`` for those run inside scripts, ``progress`` for those
        of them on a progress hash, ``other`` for sockets of no side."""
        counts: Counter[str] = Counter()
        for source, _, progress_hash in self.entries:
            if source == "lua":
                counts["lua"] += 1
                counts["progress"] += progress_hash
                continue
            port = int(source) if source.isdigit() else -1
            counts[next((name for name, ports in sides.items() if port in ports), "other")] += 1
        return counts


class Dashboard:
    """``flowq dashboard`` for the bench's app, and a poller playing an open browser."""

    def __init__(self, stack: Stack, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowq", "-A", "bench.app:app", "dashboard", "--port",
             str(port), "--refresh", "2"], cwd=ROOT, env=stack.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.watching: str | None = None
        self.requests = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                httpx.get(self.url + "/api/config", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the dashboard did not start") from None
                time.sleep(0.1)

    def _poll(self) -> None:
        tick = 0
        while not self._stop.wait(1.0):
            tick += 1
            paths = [f"/api/workflows/{self.watching}"] if self.watching else []
            if tick % 2 == 0:
                paths.append("/api/workflows")
            for path in paths:
                httpx.get(self.url + path, timeout=10)
                self.requests += 1

    def start_polling(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def pids(self) -> list[int]:
        return [self.proc.pid]


def run_chords(stack: Stack, chords: int, width: int, dashboard: Dashboard | None) -> tuple[
        list[str], float]:
    from bench.app import add, tsum
    from flowq import chord

    roots = []
    started = time.perf_counter()
    for n in range(chords):
        handle = chord([add.s(n, i) for i in range(width)], tsum.s()).delay()
        roots.append(handle.root_id)
        if dashboard is not None:
            dashboard.watching = handle.root_id
        handle.get(timeout=120)
    return roots, time.perf_counter() - started


def transitions(stack: Stack, roots: list[str]) -> int:
    from flowq.runtime import tracking

    found = [tracking.find(stack.app.runtime.backend, root) for root in roots]
    return sum(t.done for t in found if t is not None)


def measure(stack: Stack, options: Any, dashboard: Dashboard | None) -> dict[str, Any]:
    worker = stack.workers[0]
    with Commands(options.redis_url, options.redis_db) as log:
        roots, seconds = run_chords(stack, options.chords, options.width, dashboard)
        time.sleep(0.5)  # the last acks and progress writes
    moved = transitions(stack, roots)
    sides = {"producer": tcp_ports([os.getpid()]), "worker": tcp_ports(worker_pids(worker))}
    if dashboard is not None:
        sides["dashboard"] = tcp_ports(dashboard.pids())
    counts = log.count(sides)
    per = {f"{side}_per_transition": round(counts[side] / moved, 3)
           for side in ("worker", "lua", "progress", "producer")}
    fields: dict[str, Any] = {
        "chords": options.chords, "width": options.width, "transitions": moved,
        "seconds": round(seconds, 2), **per,
        "producer_per_workflow": round(counts["producer"] / options.chords, 1),
        "unattributed": counts["other"]}
    if dashboard is not None:
        # its sockets, and those it opened and closed meanwhile (a broadcast's connection):
        # nothing else uses the bench's database (the closed run leaves none unattributed)
        seen = counts["dashboard"] + counts["other"]
        fields.update({"dashboard_commands": seen,
                       "dashboard_commands_per_s": round(seen / seconds, 1),
                       "dashboard_per_transition": round(seen / moved, 3),
                       "dashboard_requests": dashboard.requests})
    return fields


def main(argv: list[str]) -> int:
    parse = parser(NAME, __doc__)
    parse.add_argument("--chords", type=int, help="chords per run (default 20; --quick 4)")
    parse.add_argument("--width", type=int, help="parts per chord (default 50; --quick 10)")
    parse.add_argument("--port", type=int, default=0, help="dashboard port (default: free)")
    options = parse.parse_args(argv)
    options.chords = options.chords or (4 if options.quick else 20)
    options.width = options.width or (10 if options.quick else 50)
    with Stack(NAME, options, control_exchange=f"flowq-bench-{uuid.uuid4().hex[:8]}") as stack:
        progress(f"starting a worker (-c {options.concurrency}) on {stack.queue}")
        stack.start_worker()
        run_chords(stack, 2, 3, None)  # warm-up
        progress(f"{options.chords} chords of {options.width}, no dashboard")
        closed = measure(stack, options, None)
        emit(NAME, "dashboard closed", **stack.description, **closed)
        port = options.port or _free_port()
        dashboard = Dashboard(stack, port)
        try:
            dashboard.wait_ready()
            dashboard.start_polling()
            time.sleep(2)  # its monitor's first look at the workers
            progress(f"{options.chords} chords of {options.width}, dashboard open on {port}")
            opened = measure(stack, options, dashboard)
        finally:
            dashboard.stop()
        emit(NAME, "dashboard open", **stack.description, **opened)
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
