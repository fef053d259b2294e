"""The log formats (pure): JSON lines, task context from the running request, bad names."""

from __future__ import annotations

import json
import logging

import pytest

from flowq.exceptions import ConfigurationError
from flowq.runtime import logs
from flowq.task import Context, _requests


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("tests.logs", logging.WARNING, __file__, 1, message,
                             args or ("world",), None)
    for name, value in extra.items():
        setattr(made, name, value)
    return made


def test_a_record_inside_a_task_gets_the_tasks_context():
    item = record()
    _requests.stack.append(Context(id="t-1", task="tasks.add", root_id="r-1"))
    try:
        assert logs.TaskContext().filter(item)
    finally:
        _requests.stack.pop()
    line = json.loads(logs.JsonFormatter().format(item))
    assert {k: line[k] for k in ("level", "logger", "task_name", "task_id", "root_id",
                                 "message")} == {
        "level": "WARNING", "logger": "tests.logs", "task_name": "tasks.add",
        "task_id": "t-1", "root_id": "r-1", "message": "hello world"}
    assert line["time"].endswith("Z") and line["process_name"] == "MainProcess"


def test_explicit_context_wins_and_no_task_gives_nulls():
    about = record(task_name="tasks.x", task_id="t-2", root_id="r-2")
    outside = record()
    _requests.stack.append(Context(id="other", task="tasks.other", root_id="other"))
    try:
        logs.TaskContext().filter(about)
    finally:
        _requests.stack.pop()
    logs.TaskContext().filter(outside)
    assert (about.task_id, about.root_id) == ("t-2", "r-2")  # type: ignore[attr-defined]
    line = json.loads(logs.JsonFormatter().format(outside))
    assert (line["task_name"], line["task_id"], line["root_id"]) == (None, None, None)


def test_an_exception_travels_in_the_same_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        import sys

        item = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    text = logs.JsonFormatter().format(item)
    assert "\n" not in text
    assert "ValueError: bad\nvalue" in json.loads(text)["exc_info"]


def test_an_unknown_format_names_the_choices():
    with pytest.raises(ConfigurationError, match=r"log format 'xml' is not one of text, json"):
        logs.formatter("xml")


def test_the_documented_json_line_has_the_formatters_keys():
    import re
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
    (block,) = [b for b in re.findall(r"```json\n(.*?)```", doc.read_text(), flags=re.S)
                if '"root_id"' in b]
    made = json.loads(logs.JsonFormatter().format(record(task_name="t", task_id="i",
                                                         root_id="r")))
    assert list(json.loads(block)) == list(made)
