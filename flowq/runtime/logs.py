"""How the worker's log lines look: text, or one JSON object per line, with task context.

Every record a worker process writes carries the task it is about, if any: records
emitted inside a running task (by the task's own loggers, in a pool process or thread)
get it from the current request, and the worker's own lines about a task (received,
succeeded, failed, retried, revoked...) pass it explicitly with ``extra=about(request)``.
With ``worker_log_format="json"`` (``flowq worker --log-format json``) each record is
one line::

    {"time": "2026-01-05T10:12:03.481Z", "level": "INFO", "logger": "flowq.worker",
     "process": 4242, "process_name": "MainProcess", "task_name": "tasks.add",
     "task_id": "5f0c...", "root_id": "9b1e...", "message": "Task tasks.add[5f0c...] received"}

``task_name``, ``task_id`` and ``root_id`` are ``null`` for records about no task; a
record with an exception adds ``exc_info`` (the formatted traceback).
"""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any, Protocol

from flowq.exceptions import ConfigurationError

#: The text format of every flowq process (worker, beat, log files).
TEXT_FORMAT = "[%(asctime)s %(levelname)s/%(processName)s] %(name)s: %(message)s"
FORMATS = ("text", "json")
#: The record attributes that name a record's task.
CONTEXT = ("task_name", "task_id", "root_id")


class TaskRequest(Protocol):
    """What :func:`about` reads: a worker's parsed request, or a task's ``self.request``."""

    @property
    def id(self) -> str | None: ...

    @property
    def task(self) -> str | None: ...

    @property
    def root_id(self) -> str | None: ...


def about(request: TaskRequest) -> dict[str, Any]:
    """``extra=`` for a log call about ``request``'s task."""
    return {"task_name": request.task, "task_id": request.id, "root_id": request.root_id}


class TaskContext(logging.Filter):
    """Gives a record without task context that of the task running in this thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "task_id"):
            from flowq.task import current_request

            request = current_request()
            context = about(request) if request is not None else dict.fromkeys(CONTEXT)
            for name, value in context.items():
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.process,
            "process_name": record.processName,
            **{name: getattr(record, name, None) for name in CONTEXT},
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def formatter(log_format: str) -> logging.Formatter:
    """The formatter for ``log_format`` (``text`` or ``json``); ConfigurationError for
    anything else."""
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ConfigurationError(f"log format {log_format!r} is not one of {', '.join(FORMATS)} "
                             f"(setting worker_log_format, or worker --log-format)")


def install(handler: logging.Handler, level: str, log_format: str = "text") -> None:
    """Make ``handler`` the only handler of the root logger, writing ``log_format`` lines
    with task context, at ``level``."""
    handler.setFormatter(formatter(log_format))
    handler.addFilter(TaskContext())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
