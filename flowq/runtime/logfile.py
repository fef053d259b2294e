"""``flowq worker --logfile PATH``: one log file per process, named from a pattern.

The pattern may hold ``%h`` (this machine's host name), ``%n`` (the name part of the
node name, before ``@``), ``%p`` (the whole node name), ``%i`` (the process index: 0 in
the worker's main process, 1..N in its pool processes), ``%I`` (the same with a dash,
and nothing in the main process: ``-1``, ``-2``...) and ``%%`` (a literal ``%``). So
``-n w1@%h --logfile /var/log/flowq/%n-%i.log`` gives ``w1-0.log`` for the main process
and ``w1-1.log``, ``w1-2.log``... for the pool; ``--logfile w.log`` is one file for all.

The handler notices it runs in a new process (a pool child forked after it was installed)
at the first record there and opens that process's own file, so pool processes need no
set-up of their own.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from flowq.runtime import logs, signalling


def process_index() -> int:
    """0 in the main process; a pool process's position in its pool, from 1."""
    try:
        from billiard.process import current_process

        index = getattr(current_process(), "index", None)
    except Exception:  # noqa: BLE001 - not under billiard
        index = None
    return 0 if index is None else int(index) + 1


def expand(pattern: str, nodename: str, index: int | None = None) -> str:
    """``pattern`` with ``%h``, ``%n``, ``%p``, ``%i``, ``%I`` and ``%%`` replaced."""
    number = process_index() if index is None else index
    values = {"h": socket.gethostname(), "n": nodename.split("@", 1)[0], "p": nodename,
              "i": str(number), "I": f"-{number}" if number else "", "%": "%"}
    out: list[str] = []
    chars = iter(pattern)
    for char in chars:
        if char != "%":
            out.append(char)
            continue
        code = next(chars, "")
        out.append(values.get(code, "%" + code))
    return "".join(out)


class ProcessFileHandler(logging.Handler):
    """Writes each process's records to the file its pattern names for that process."""

    def __init__(self, pattern: str, nodename: str):
        super().__init__()
        self.pattern = pattern
        self.nodename = nodename
        self._pid: int | None = None
        self._file: logging.FileHandler | None = None

    @property
    def path(self) -> str:
        """The file of the current process."""
        return expand(self.pattern, self.nodename)

    def _current(self) -> logging.FileHandler:
        # Called under the handler's own lock (logging.Handler.handle), which the logging
        # module re-creates in a forked child: no lock of ours is needed.
        pid = os.getpid()
        if self._file is None or self._pid != pid:
            # After a fork the inherited handler is the parent's file: leave it alone and
            # open this process's own.
            path = Path(self.path)
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(self.formatter)
            self._file, self._pid = handler, pid
        return self._file

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._current().emit(record)
        except Exception:  # noqa: BLE001 - logging must never break the worker
            self.handleError(record)

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        super().close()


def log_to_file(pattern: str, nodename: str, level: str,
                 log_format: str = "text") -> ProcessFileHandler:
    """Send every log record of this process (and its pool processes) to ``pattern``'s files
    instead of stderr, as ``log_format`` lines (unless a ``setup_logging`` receiver
    configures logging itself); returns the handler."""
    handler = ProcessFileHandler(pattern, nodename)

    def configure() -> None:
        logs.install(handler, level, log_format)
        handler._current()  # open the main process's file now: a bad path fails at start-up

    signalling.set_up_logging(level, pattern, log_format, configure)
    return handler
