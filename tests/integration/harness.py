"""Real workers for integration tests: subprocesses in their own process group.

A :class:`Cluster` is one broker/backend configuration (Redis + Redis, RabbitMQ +
Redis, or the embedded SQLite default) with a unique queue, key prefix and ledger, and
the worker processes started for it. Tests stop workers by signalling their process
group (never by name), and every resource is cleaned afterwards.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from flowq.runtime.worker import READY

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
LEDGER_DB = 15

#: name -> (broker URL template, backend URL template); None = embedded default
CONFIGS: dict[str, tuple[str | None, str | None]] = {
    "redis": (f"{REDIS_URL}/4", f"{REDIS_URL}/4?key_prefix={{prefix}}"),
    "amqp": (AMQP_URL, f"{REDIS_URL}/5?key_prefix={{prefix}}"),
    "embedded": (None, None),
    # the dashboard's and stuck-workflow tests: broker, backend and ledger in db 3
    "redis3": (f"{REDIS_URL}/3", f"{REDIS_URL}/3?key_prefix={{prefix}}"),
    # the observability tests (handles, progress, metrics, resume): all in db 14
    "redis-db14": (f"{REDIS_URL}/14", f"{REDIS_URL}/14?key_prefix={{prefix}}"),
    # the signal and stamping tests: all in db 10
    "redis-db10": (f"{REDIS_URL}/10", f"{REDIS_URL}/10?key_prefix={{prefix}}"),
}
#: Where each configuration keeps its ledger (default: LEDGER_DB).
LEDGER_DBS = {"redis3": 3, "redis-db14": 14, "redis-db10": 10}


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "a condition",
             interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy and return that; fail naming
    ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def require_server(name: str, port: int) -> None:
    """Fail (in CI) or skip (elsewhere) when a server the test needs is down."""
    import pytest

    if port_open("127.0.0.1", port):
        return
    message = f"{name} is not answering on 127.0.0.1:{port}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI requires it: .ci/run starts it)")
    pytest.skip(message)


def delete_broker_keys(client: redis.Redis, token: str) -> None:
    """Delete every key flowq's Redis transport made for names holding ``token``: the
    queues (``<queue>``, ``<queue>.dead``, mailboxes of the cluster's control exchange),
    their bindings and recorded exchange types."""
    keys = list(client.scan_iter(match=f"flowq:*{token}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])
    types = [name for name, _ in client.hscan_iter("flowq:exchanges", match=f"*{token}*")]
    if types:
        client.hdel("flowq:exchanges", *types)


class WorkerProcess:
    """``flowq worker`` in a subprocess with its own process group."""

    def __init__(self, cluster: Cluster, *args: str, concurrency: int = 2,
                 env: dict[str, str] | None = None, app: str | None = "tests.integration.app:app"):
        """``app`` None: the app is given in ``args`` (e.g. after ``worker``)."""
        self.cluster = cluster
        self.log_path = cluster.tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
        command = [sys.executable, "-m", "flowq", *(("-A", app) if app else ()), "worker",
                   "-c", str(concurrency), "-l", "info", *args]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, cwd=ROOT, env={**cluster.env, **(env or {})},
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send_signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Signal the worker and wait; kill its whole process group if it lingers."""
        code = None
        if self.alive():
            self.send_signal(signum)
            code = self.wait(timeout)
        self.kill_group()
        self._log.close()
        return code if code is not None else self.proc.returncode

    def kill_group(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.wait(10)


class Cluster:
    """One broker/backend configuration with a private queue, keys and ledger."""

    def __init__(self, name: str, tmp: Path,
                 urls: tuple[str | None, str | None] | None = None):
        """``urls``: (broker URL, backend URL template) instead of ``CONFIGS[name]``'s."""
        self.name = name
        self.tmp = tmp
        self.token = token = uuid.uuid4().hex[:10]
        self.queue = f"flowq-test-{token}"
        self.prefix = f"flowq-test-{token}:"
        broker, backend = urls or CONFIGS[name]
        self.broker_url = broker
        self.backend_url = backend.format(prefix=self.prefix) if backend else None
        self.data_dir = str(tmp / "data")
        self.ledger_prefix = f"flowq-ledger-{token}:"
        self.ledger_url = f"{REDIS_URL}/{LEDGER_DBS.get(name, LEDGER_DB)}"
        self.env = {k: v for k, v in os.environ.items()
                    if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND")}
        self.control = f"flowq-test-{token}"  # broadcasts reach this cluster's workers only
        self.env.update({"FLOWQ_TEST_QUEUE": self.queue, "FLOWQ_TEST_DATA": self.data_dir,
                         "FLOWQ_TEST_CONTROL": self.control,
                         "FLOWQ_TEST_LEDGER": f"{self.ledger_url}#{self.ledger_prefix}",
                         "PYTHONPATH": str(ROOT)})
        if broker:
            self.env["FLOWQ_BROKER_URL"] = broker
        if self.backend_url:
            self.env["FLOWQ_RESULT_BACKEND"] = self.backend_url
        self.workers: list[WorkerProcess] = []
        self.ledger = redis.Redis.from_url(self.ledger_url)

    def configure(self, app: Any) -> None:
        """Point the test process's app at this cluster."""
        from tests.integration import app as app_module

        app.close()
        app.conf.broker_url = self.broker_url
        app.conf.result_backend = self.backend_url
        app.conf.task_default_queue = self.queue
        app.conf.data_dir = self.data_dir
        app.conf.control_exchange = self.control
        app._reset_runtime()
        app_module.LEDGER_PREFIX = self.ledger_prefix
        app_module._ledger_url = self.ledger_url
        app_module._ledger = None

    def start_worker(self, *args: str, wait: bool = True, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(self, *args, **kwargs)
        self.workers.append(worker)
        if wait:
            self.wait_ready(worker)
        return worker

    def wait_ready(self, worker: WorkerProcess, timeout: float = 30.0) -> None:
        """Wait until the worker logs that it is ready: it consumes and answers remote
        control (its banner comes earlier, before it connects)."""
        deadline = time.monotonic() + timeout
        while READY not in worker.log():
            if not worker.alive():
                raise RuntimeError(f"worker exited early:\n{worker.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker not ready after {timeout}s:\n{worker.log()}")
            time.sleep(0.05)

    def open_gate(self, token: str) -> None:
        """Let the ``gate`` tasks waiting on ``token`` finish."""
        self.ledger.set(f"{self.ledger_prefix}gate:{token}", 1)

    def release(self, token: str) -> None:
        """Let the fault tasks blocked with ``fault="block", token=token`` carry on."""
        self.ledger.set(f"{self.ledger_prefix}release:{token}", 1)

    def ledger_list(self, kind: str) -> list[str]:
        return [v.decode() for v in self.ledger.lrange(f"{self.ledger_prefix}{kind}", 0, -1)]

    def cleanup(self) -> None:
        for worker in self.workers:
            worker.stop()
        self._delete_keys(self.ledger, self.ledger_prefix)
        if self.backend_url:
            backend = redis.Redis.from_url(self.backend_url.split("?")[0])
            self._delete_keys(backend, self.prefix)
        if self.broker_url and self.broker_url.startswith("redis"):
            delete_broker_keys(redis.Redis.from_url(self.broker_url), self.token)
        if self.broker_url and self.broker_url.startswith("amqp"):
            self._delete_amqp_queues()

    @staticmethod
    def _delete_keys(client: redis.Redis, prefix: str) -> None:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])

    def _delete_amqp_queues(self) -> None:
        from kombu import Connection

        with Connection(self.broker_url) as connection:
            channel = connection.channel()
            for name in (self.queue, self.queue + ".dead"):
                try:
                    channel.queue_delete(name)
                except Exception:  # noqa: BLE001 - already gone
                    channel = connection.channel()
                try:
                    channel.exchange_delete(name)
                except Exception:  # noqa: BLE001
                    channel = connection.channel()
