"""The two systems ``python -m bench compare`` runs side by side, as deployments.

A deployment is one system on the shared Redis server, with a private queue, key prefix
and ledger: ``flowq`` is :class:`bench.harness.Stack` (database ``--redis-db``), ``celery``
is :class:`CeleryStack` (database ``--celery-db``), both started as real ``worker``
subprocesses with the same concurrency and prefork pool. Leaving a deployment stops its
workers and deletes everything it wrote.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import redis

from bench.harness import Stack, Worker, progress

SYSTEMS = ("flowq", "celery")


class CeleryStack:
    """Celery 5.7 (``bench.celery_app``) on its own Redis database, queue and key prefix.

    The worker runs with ``--without-gossip --without-mingle --without-heartbeat``, the
    settings Celery's own docs suggest for throughput: the comparison gives Celery its
    fastest usual configuration, not its defaults.
    """

    def __init__(self, options: argparse.Namespace):
        token = uuid.uuid4().hex[:10]
        self.options = options
        self.queue = f"celery-bench-{token}"
        self.prefix = f"celery-bench-{token}:"
        self.tmp = Path(tempfile.mkdtemp(prefix="celery-bench-"))
        self.url = f"{options.redis_url.rstrip('/')}/{options.celery_db}"
        self.redis = redis.Redis.from_url(self.url)
        self.workers: list[Worker] = []
        self.env = {**Stack.base_env(), "CELERY_BENCH_URL": self.url,
                    "CELERY_BENCH_QUEUE": self.queue, "CELERY_BENCH_PREFIX": self.prefix}

    @property
    def description(self) -> dict[str, Any]:
        return {"broker": "redis", "backend": "redis", "pool": "prefork",
                "concurrency": self.options.concurrency}

    def start_worker(self, ready: bool = False) -> Worker:
        command = [sys.executable, "-m", "celery", "-A", "bench.celery_app:app", "worker",
                   "-c", str(self.options.concurrency), "-P", "prefork", "-Q", self.queue,
                   "-l", self.options.loglevel, "--without-gossip", "--without-mingle",
                   "--without-heartbeat"]
        worker = Worker(self, self.options.concurrency, self.options.loglevel, self.env,
                        command=command)
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            if worker.stop() not in (0, None):
                progress(f"celery worker {worker.pid} log tail:\n{worker.log()[-2000:]}")
        self.workers.clear()

    def close(self) -> None:
        self.stop_workers()
        for pattern in (f"{self.prefix}*", f"{self.queue}*", f"_kombu.binding.*{self.queue}*"):
            keys = list(self.redis.scan_iter(match=pattern, count=1000))
            for start in range(0, len(keys), 500):
                self.redis.delete(*keys[start:start + 500])
        self.redis.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> CeleryStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def deploy(system: str, options: argparse.Namespace) -> Stack | CeleryStack:
    """A fresh deployment of ``system``."""
    if system == "flowq":
        return Stack("compare", options)
    return CeleryStack(options)


def celery_missing() -> str | None:
    """Why Celery cannot run here, or None."""
    try:
        import celery  # noqa: F401
    except ImportError:
        return ("Celery is not installed: pip install -e '.[bench]' (Celery 5.7 and "
                "matplotlib come only with the bench extra), or pass --systems flowq")
    return None



