"""A real worker and a real ``flowq dashboard`` process for the dashboard tests.

Both run on the ``redis3`` configuration (broker, backend and ledger in Redis db 3) with
the cluster's own queue, key prefix and control exchange; the dashboard listens on a free
loopback port and is stopped by its process group.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.app import app
from tests.integration.harness import ROOT, Cluster, require_server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DashboardProcess:
    """``flowq dashboard`` in a subprocess with its own process group."""

    def __init__(self, cluster: Cluster, *args: str, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cluster.tmp / f"dashboard-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed by stop()
        command = [sys.executable, "-m", "flowq", "-A", "tests.integration.app:app",
                   "dashboard", "--host", host, "--port", str(self.port), *args]
        self.proc = subprocess.Popen(command, cwd=ROOT, env={**cluster.env, **(env or {})},
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log(self) -> str:
        return Path(self.log_path).read_text()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dashboard exited with {self.proc.returncode}:\n{self.log()}")
            try:
                httpx.get(self.url + "/api/config", timeout=1.0)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"dashboard not answering:\n{self.log()}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
        self._log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A worker (2 prefork children) on Redis db 3, with events on (heartbeats)."""
    require_server("Redis", 6379)
    instance = Cluster("redis3", tmp_path_factory.mktemp("dashboard"))
    instance.configure(app)
    instance.start_worker("-E", "-n", f"dash-{instance.queue[-6:]}@%h", concurrency=2)
    yield instance
    instance.cleanup()
    app.close()


@pytest.fixture(scope="module")
def dashboard(cluster: Cluster) -> Iterator[DashboardProcess]:
    """A read-only dashboard that marks workflows stuck after 1 s."""
    process = DashboardProcess(cluster, "--stuck-after", "1s", "--refresh", "0.5")
    process.wait_ready()
    yield process
    process.stop()
