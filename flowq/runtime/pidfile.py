"""``flowq worker --pidfile PATH``: the worker's pid in a file, for service managers.

A pidfile whose pid still runs stops a second worker from starting with the same file;
one left by a worker that was killed (its pid no longer runs) is replaced. The worker
removes its file when it exits; pool processes, forked from it, never do.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flowq.exceptions import ConfigurationError

log = logging.getLogger("flowq.worker")


def running(pid: int) -> bool:
    """Whether a process with ``pid`` exists (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: the signal said it exists
    return state != "Z"


class Pidfile:
    """Holds ``path`` with this process's pid from :meth:`acquire` to :meth:`release`."""

    def __init__(self, path: str):
        self.path = Path(path)
        self.pid = os.getpid()

    def read(self) -> int | None:
        """The pid in the file, None if there is no file; -1 if it holds no pid."""
        try:
            text = self.path.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() else -1

    def acquire(self) -> None:
        """Write this process's pid; ConfigurationError if another running process holds it."""
        held = self.read()
        if held is not None and held != self.pid:
            if held > 0 and running(held):
                raise self._taken(held)
            log.warning("Replacing the stale pidfile %s (%s)", self.path,
                        f"pid {held} is not running" if held > 0 else "it holds no pid")
            self.path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:  # another worker wrote it just now
            raise self._taken(self.read()) from None
        with os.fdopen(descriptor, "w") as file:
            file.write(f"{self.pid}\n")

    def release(self) -> None:
        """Remove the file if it still holds this process's pid."""
        if os.getpid() == self.pid and self.read() == self.pid:
            self.path.unlink(missing_ok=True)

    def _taken(self, pid: int | None) -> ConfigurationError:
        return ConfigurationError(
            f"pidfile {self.path} holds pid {pid}, which is running: another worker uses it; "
            f"stop that worker, or give this one another --pidfile")
