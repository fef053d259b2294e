"""The progress bar of ``result.get(progress=True)``, drawn on a terminal only.

While ``get()`` waits as usual, a background thread reads the workflow's progress every
``interval`` seconds (one ``get_many`` over its tasks' records, see
:func:`flowq.runtime.live.progress`) and redraws one line on standard error::

    [##################............] 12/20 done, 1 failed, 2 running

When standard error is not a terminal (a log file, a pipe, a service) nothing is drawn
and nothing extra is read.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TextIO

from flowq.exceptions import FlowqError
from flowq.runtime.live import TaskProgress

#: Seconds between two redraws (``get(interval=...)`` overrides it).
INTERVAL = 0.5
#: Characters of the bar itself.
WIDTH = 30


def is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def bar_line(progress: TaskProgress, width: int = WIDTH) -> str:
    """``[####......] 4/10 done, 1 failed, 2 running`` (the counts that are not zero)."""
    filled = width if progress.total == 0 else min(width, width * progress.done // progress.total)
    line = f"[{'#' * filled}{'.' * (width - filled)}] {progress.done}/{progress.total} done"
    if progress.failed:
        line += f", {progress.failed} failed"
    if progress.running:
        line += f", {progress.running} running"
    return line


class ProgressBar:
    """One line redrawn in place (carriage return), only when it changes."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._shown: str | None = None

    def draw(self, progress: TaskProgress) -> None:
        line = bar_line(progress)
        if line == self._shown:
            return
        padding = " " * max(0, len(self._shown or "") - len(line))  # wipe a longer line
        self.stream.write(f"\r{line}{padding}")
        self.stream.flush()
        self._shown = line

    def close(self) -> None:
        if self._shown is not None:
            self.stream.write("\n")
            self.stream.flush()


@contextlib.contextmanager
def shown(read: Callable[[], TaskProgress], stream: TextIO | None = None,
          interval: float = INTERVAL) -> Iterator[None]:
    """Draw ``read()`` every ``interval`` seconds while the block runs, and once more at
    its end, if ``stream`` (default: standard error) is a terminal; else do nothing.

    A read that fails (the backend away for a moment) skips one redraw: the wait inside
    the block reports such errors itself.
    """
    stream = stream or sys.stderr
    if not is_terminal(stream):
        yield
        return
    bar = ProgressBar(stream)
    stop = threading.Event()

    def redraw() -> None:
        try:
            bar.draw(read())
        except FlowqError:
            pass

    def loop() -> None:
        while True:
            redraw()
            if stop.wait(interval):
                return

    thread = threading.Thread(target=loop, name="flowq-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        redraw()
        bar.close()
