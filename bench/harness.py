"""What every bench shares: private resources, worker subprocesses, JSON output.

A :class:`Stack` is one broker/backend configuration (Redis + Redis in a private
database, or the embedded SQLite default in a temporary directory) with its own queue
and key prefix, plus the ``flowq worker`` subprocesses started for it. Workers run in
their own process group and are stopped by signalling that group (never by name);
:meth:`Stack.close` stops them and deletes every key, queue and file the bench wrote.

Output: :func:`emit` prints one JSON line per case on stdout; :func:`progress` prints a
short line on stderr. Nothing here asserts on timings.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import redis

from flowq.runtime.keys import BrokerKeys

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = "redis://127.0.0.1:6379"
#: Redis database the benches use unless ``--redis-db`` says otherwise (tests use 4, 5, 15).
DEFAULT_DB = 12
APP_PATH = "bench.app:app"


# -- output ---------------------------------------------------------------------------------

@functools.cache
def flowq_revision() -> str:
    """The checked-out commit (``-dirty`` with uncommitted changes), or ``?``."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                              capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def emit(bench: str, case: str, **fields: Any) -> dict[str, Any]:
    """Print one JSON line for a case and return it."""
    record = {"bench": bench, "case": case, **fields, "flowq": flowq_revision(),
              "cpus": os.cpu_count(), "load_1m": round(os.getloadavg()[0], 2),
              "python": platform.python_version(),
              "at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    print(json.dumps(record), flush=True)
    return record


def progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_summary(seconds: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50/p95/p99/mean/max of ``seconds``, in milliseconds, as JSON fields."""
    ms = [s * 1000 for s in seconds]
    return {f"{prefix}p50_ms": round(statistics.median(ms), 3),
            f"{prefix}p95_ms": round(percentile(ms, 95), 3),
            f"{prefix}p99_ms": round(percentile(ms, 99), 3),
            f"{prefix}mean_ms": round(statistics.fmean(ms), 3),
            f"{prefix}max_ms": round(max(ms), 3)}


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the options every bench accepts."""
    lines = (doc or name).strip().splitlines()
    result = argparse.ArgumentParser(
        prog=f"python -m bench {name}", description=lines[0],
        epilog="\n".join(lines[1:]), formatter_class=argparse.RawDescriptionHelpFormatter)
    result.add_argument("--quick", action="store_true", help="smaller sizes (seconds, not minutes)")
    result.add_argument("--full", action="store_true",
                        help="add the largest sizes too (minutes; e.g. a chain of 5,000)")
    result.add_argument("--redis-url", default=REDIS_URL, help="Redis server (no database)")
    result.add_argument("--redis-db", type=int, default=DEFAULT_DB,
                        help=f"private Redis database for broker and backend "
                             f"(default {DEFAULT_DB})")
    result.add_argument("--concurrency", "-c", type=int, default=2, help="prefork children")
    result.add_argument("--loglevel", default="WARNING", help="worker log level")
    result.add_argument("--profile", metavar="DIR",
                        help="record the worker (and its children) with py-spy into DIR")
    result.add_argument("--keep-logs", action="store_true", help="keep worker logs; print where")
    return result


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by process ``pid`` (Linux /proc); 0 if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU time spent by the worker's main process, its pool children, the Redis server
    and this process between :meth:`start` and :meth:`stop` (Linux only)."""

    def __init__(self, worker: Worker, redis_client: redis.Redis | None):
        self.worker = worker
        self.redis_pid: int | None = None
        if redis_client is not None:
            try:
                pid = int(redis_client.info("server")["process_id"])
                self.redis_pid = pid if Path(f"/proc/{pid}").exists() else None
            except (redis.RedisError, KeyError, ValueError):
                pass
        self._start: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        usage = {"worker_main": cpu_seconds(self.worker.pid),
                 "pool_children": sum(cpu_seconds(pid) for pid in self.worker.children()),
                 "bench_process": sum(os.times()[:2])}
        if self.redis_pid:
            usage["redis_server"] = cpu_seconds(self.redis_pid)
        return usage

    def start(self) -> None:
        self._start = self.sample()

    def per_task_ms(self, tasks: int) -> dict[str, float]:
        """CPU milliseconds per task by process since :meth:`start`."""
        end = self.sample()
        return {f"cpu_ms_per_task_{name}": round((end[name] - self._start.get(name, 0.0))
                                                 / tasks * 1000, 3) for name in end}


# -- workers --------------------------------------------------------------------------------

class Worker:
    """``flowq worker`` (or ``command``) in a subprocess with its own process group."""

    def __init__(self, stack: Any, concurrency: int, loglevel: str,
                 env: dict[str, str] | None = None, profile: str | None = None,
                 command: list[str] | None = None):
        self.log_path = stack.tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
        command = command or [sys.executable, "-m", "flowq", "-A", APP_PATH, "worker",
                              "-c", str(concurrency), "-l", loglevel, "-Q", stack.queue]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, cwd=ROOT, env={**stack.env, **(env or {})},
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.started = time.perf_counter()
        self.profiler: subprocess.Popen[bytes] | None = None
        if profile:
            self._start_profiler(Path(profile), stack.name)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_bytes(self) -> int:
        """Resident memory of the worker's main process and its pool children together."""
        total = 0
        for pid in (self.pid, *self.children()):
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def children(self) -> list[int]:
        """Pids of the pool children (Linux: from /proc)."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            try:
                pids += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
        return pids

    def _start_profiler(self, directory: Path, name: str) -> None:
        if shutil.which("py-spy") is None:
            progress("--profile needs py-spy (pip install py-spy); not profiling")
            return
        directory.mkdir(parents=True, exist_ok=True)
        output = directory / f"{name}-{self.pid}.folded.txt"  # folded stacks, one per line
        self.profiler = subprocess.Popen(
            ["py-spy", "record", "--pid", str(self.pid), "--subprocesses", "--gil",
             "--rate", "100", "--format", "raw", "--output", str(output)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        progress(f"profiling worker {self.pid} into {output}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM); SIGKILL the whole process group if it lingers."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                progress(f"worker {self.pid} did not stop in {timeout}s; killing its group")
        try:
            os.killpg(self.pid, signal.SIGKILL)  # leftover children, if any
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        if self.profiler is not None:
            try:
                self.profiler.wait(30)  # py-spy writes its file when the target exits
            except subprocess.TimeoutExpired:
                self.profiler.kill()
        self._log.close()
        return self.proc.returncode


# -- one configuration ------------------------------------------------------------------------

class Stack:
    """A broker/backend configuration with private names, and the workers started for it.

    ``kind``: ``"redis"`` (broker and backend in database ``--redis-db``, keys under a
    unique prefix, a unique queue) or ``"embedded"`` (the SQLite default in a temporary
    directory). Use as a context manager: leaving it stops workers and deletes everything.
    """

    def __init__(self, name: str, options: argparse.Namespace, kind: str = "redis",
                 **settings: Any):
        self.name = name
        self.kind = kind
        self.options = options
        token = uuid.uuid4().hex[:10]
        self.queue = f"flowq-bench-{token}"
        self.prefix = f"flowq-bench-{token}:"
        self.tmp = Path(tempfile.mkdtemp(prefix=f"flowq-bench-{name}-"))
        self.data_dir = str(self.tmp / "data")
        self.workers: list[Worker] = []
        self.settings = settings
        self.redis_db_url = f"{options.redis_url.rstrip('/')}/{options.redis_db}"
        self.redis = redis.Redis.from_url(self.redis_db_url)
        if kind == "redis":
            self.broker_url: str | None = self.redis_db_url
            self.backend_url: str | None = f"{self.redis_db_url}?key_prefix={self.prefix}"
        elif kind == "embedded":
            self.broker_url = self.backend_url = None
        else:
            raise ValueError(f"unknown stack kind {kind!r}; use 'redis' or 'embedded'")
        self.env = self.base_env()
        self.env.update({"FLOWQ_BENCH_QUEUE": self.queue, "FLOWQ_BENCH_DATA": self.data_dir,
                         "FLOWQ_BENCH_SETTINGS": json.dumps(settings)})
        if self.broker_url:
            self.env["FLOWQ_BROKER_URL"] = self.broker_url
        if self.backend_url:
            self.env["FLOWQ_RESULT_BACKEND"] = self.backend_url
        from bench.app import app

        self.app = app
        self._configure()

    @staticmethod
    def base_env() -> dict[str, str]:
        """This process's environment without flowq's server URLs, with the repository
        on ``PYTHONPATH`` (so workers import ``bench.*``)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND")}
        env["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        return env

    def _configure(self) -> None:
        """Point this process's app at the stack."""
        app = self.app
        app.close()
        app.conf.broker_url = self.broker_url
        app.conf.result_backend = self.backend_url
        app.conf.task_default_queue = self.queue
        app.conf.data_dir = self.data_dir
        for key, value in self.settings.items():
            app.conf[key] = value
        app._reset_runtime()

    @property
    def description(self) -> dict[str, Any]:
        """JSON fields naming the configuration (for every emitted line)."""
        transport = "redis" if self.kind == "redis" else "sqlite (embedded default)"
        return {"broker": transport, "backend": transport,
                "concurrency": self.options.concurrency, "pool": "prefork"}

    def start_worker(self, env: dict[str, str] | None = None, ready: bool = True,
                     concurrency: int | None = None) -> Worker:
        """Start a worker; with ``ready``, return once it has run a task."""
        worker = Worker(self, concurrency or self.options.concurrency, self.options.loglevel,
                        env, self.options.profile)
        self.workers.append(worker)
        if ready:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: Worker, timeout: float = 60.0) -> float:
        """Round-trip a no-op task through ``worker``; return the seconds it took."""
        from bench.app import noop

        started = time.perf_counter()
        handle = noop.delay()
        deadline = started + timeout
        while True:
            if not worker.alive():
                raise RuntimeError(f"worker exited early:\n{worker.log()[-4000:]}")
            try:
                handle.get(timeout=1.0)
                return time.perf_counter() - started
            except TimeoutError:
                if time.perf_counter() > deadline:
                    raise RuntimeError(
                        f"worker not ready after {timeout}s:\n{worker.log()[-4000:]}") from None

    def stop_workers(self) -> None:
        for worker in self.workers:
            code = worker.stop()
            if code not in (0, None):
                progress(f"worker {worker.pid} exited with {code}; log tail:\n"
                         f"{worker.log()[-2000:]}")
        self.workers.clear()

    def wait_results(self, ids: Sequence[str], timeout: float, interval: float = 0.05,
                     window: int = 1000, on_first: Any = None) -> tuple[float | None, float, int]:
        """Poll until every id has a result; return (first seen, all seen, polls).

        Times are ``perf_counter`` values. Ids are checked in order, ``window`` at a time,
        so each poll costs a few MGETs however many ids remain (results arrive roughly
        in publish order). Raises TimeoutError with the count still missing.
        """
        backend = self.app.backend
        pending = list(ids)
        first: float | None = None
        polls = 0
        deadline = time.perf_counter() + timeout
        while pending:
            head = pending[:window]
            polls += 1
            records = backend.get_many(head)
            now = time.perf_counter()
            done = {task_id for task_id, record in zip(head, records)
                    if record is not None and record.state in ("SUCCESS", "FAILURE")}
            if done and first is None:
                first = now
                if on_first is not None:
                    on_first()
            pending = [task_id for task_id in head if task_id not in done] + pending[window:]
            if pending and len(done) < len(head) // 2:
                if now > deadline:
                    raise TimeoutError(f"{len(pending)} of {len(ids)} results missing after "
                                       f"{timeout}s")
                time.sleep(interval)
        return first, time.perf_counter(), polls

    def failures(self, ids: Sequence[str]) -> int:
        records = self.app.backend.get_many(list(ids))
        return sum(1 for record in records if record is None or record.state != "SUCCESS")

    def queue_streams(self) -> list[str]:
        """The Redis streams flowq's transport keeps this stack's queue in (one per
        priority)."""
        return BrokerKeys().streams(self.queue)

    def queued(self) -> int:
        """Messages in the stack's queue (Redis): waiting or held, not yet acknowledged."""
        return sum(int(self.redis.xlen(key)) for key in self.queue_streams())

    def close(self) -> None:
        """Stop workers and delete every key, queue and file this stack wrote."""
        self.stop_workers()
        try:
            self.app.close()
        except Exception:  # noqa: BLE001 - the connection may be gone already
            pass
        if self.kind == "redis":
            self.delete_keys(f"{self.prefix}*")
            self.delete_keys(f"flowq:*{self.queue}*")  # the queue's streams and bindings
        self.redis.close()
        if self.options.keep_logs:
            kept = Path(tempfile.gettempdir()) / f"{self.tmp.name}-logs"
            kept.mkdir(exist_ok=True)
            for log in self.tmp.glob("worker-*.log"):
                shutil.copy(log, kept / log.name)
            progress(f"worker logs kept in {kept}")
        shutil.rmtree(self.tmp, ignore_errors=True)

    def delete_keys(self, pattern: str) -> int:
        keys = list(self.redis.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 500):
            self.redis.delete(*keys[start:start + 500])
        return len(keys)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
