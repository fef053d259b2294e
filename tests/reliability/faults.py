"""Ways to hurt a worker, as parameters (Celery smoke-test style), and the helpers to do it.

Only processes this test run started are signalled: a worker's pid (and its process
group), or a pool child's pid as reported by that worker (``inspect().stats()``) or
written to the ledger by the task it runs. Nothing is ever killed by name.
"""

from __future__ import annotations

import enum
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.integration.harness import WorkerProcess, port_open, wait_for


class WorkerKill:
    """How the test stops a whole worker."""

    class Method(enum.Enum):
        SIGTERM = "sigterm"              # warm shutdown: finish running tasks, exit 0
        SIGTERM_TWICE = "sigterm-twice"  # warm, then cold: the documented escalation
        SIGQUIT = "sigquit"              # cold shutdown: kill running tasks, exit 1
        SIGKILL = "sigkill"              # hard: the worker and its pool die at once

    @staticmethod
    def apply(worker: WorkerProcess, method: WorkerKill.Method) -> None:
        if method is WorkerKill.Method.SIGTERM:
            worker.send_signal(signal.SIGTERM)
        elif method is WorkerKill.Method.SIGTERM_TWICE:
            worker.send_signal(signal.SIGTERM)
            time.sleep(0.3)  # let the first one start the warm shutdown
            worker.send_signal(signal.SIGTERM)
        elif method is WorkerKill.Method.SIGQUIT:
            worker.send_signal(signal.SIGQUIT)
        else:
            os.killpg(worker.pid, signal.SIGKILL)


class TaskFault:
    """What a fault task (:mod:`tests.reliability.fault_tasks`) does on its first attempt.

    The ``kill_*`` faults SIGKILL the pool child at a precise point after the task body
    returned, in the order the child records a success.
    """

    class Method(str, enum.Enum):
        BLOCK = "block"                          # wait for a release; the test kills the child
        OS_EXIT = "os_exit"                      # os._exit(1) in the body
        ALWAYS_EXIT = "always_exit"              # os._exit(1) on every attempt (crash loop)
        SYSTEM_EXIT = "system_exit"              # raise SystemExit(1) in the body
        KILL_BEFORE_STORE = "kill_before_store"  # body returned, result not stored yet
        KILL_BEFORE_NEXT = "kill_before_next"    # result stored, next chain step not sent
        KILL_BEFORE_BODY = "kill_before_body"    # chord completed, its body not sent yet
        KILL_BEFORE_DISPATCH = "kill_before_dispatch"  # recorded, whatever comes next unsent
        KILL_BEFORE_FLAG = "kill_before_flag"    # all sent, 'advanced' flag not set yet
        KILL_AFTER_RECORD = "kill_after_record"  # all recorded, outcome not handed back/acked


def kill(pid: int, signum: int = signal.SIGKILL) -> None:
    """Signal ``pid`` (a process this test started or that its worker reported)."""
    os.kill(pid, signum)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers signal 0; read its state to tell.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def pool_pids(app: Any, hostname: str, timeout: float = 1.0) -> list[int]:
    """The pool children's pids as the worker ``hostname`` reports them."""
    replies = app.control.inspect(destination=[hostname], timeout=timeout).stats() or {}
    return list(replies[hostname]["pool"]["processes"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of this test alone, on a free port, that the test may kill.

    Durable as the scenarios ask (AOF, ``appendfsync always``, no RDB snapshots), so a
    restart keeps every acknowledged write. ``password`` turns on ``requirepass``.
    """

    def __init__(self, directory: Path, password: str | None = None):
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "yes", "--appendfsync", "always",
                   "--dir", str(self.directory), "--daemonize", "no", "--loglevel", "warning"]
        if self.password:
            command += ["--requirepass", self.password]
        with open(self.directory / "redis.log", "a") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_for(lambda: port_open("127.0.0.1", self.port, 0.2), 10,
                 f"redis-server on port {self.port}")

    def kill(self) -> None:
        """SIGKILL the server (by the pid we started) and wait until the port is closed."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        wait_for(lambda: not port_open("127.0.0.1", self.port, 0.2), 10,
                 f"port {self.port} to close")

    def stop(self) -> None:
        self.kill()
        self.proc = None
