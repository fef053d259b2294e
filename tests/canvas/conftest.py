"""Shared fixtures of the canvas tests: the in-memory app and clean run ledgers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowq import Flowq, _state

from . import tasks


@pytest.fixture(autouse=True)
def _clean_ledgers() -> Iterator[None]:
    """Fresh run ledgers, and the canvas app as the current one (other test modules of
    the same process create apps of their own)."""
    _state.set_current_app(tasks.app)
    tasks.reset()
    yield
    tasks.reset()


@pytest.fixture
def app() -> Flowq:
    return tasks.app


@pytest.fixture
def always_eager(app: Flowq) -> Iterator[Flowq]:
    """``apply_async``/``delay``/``chord(header)(body)`` run in-process instead of sending."""
    app.conf.task_always_eager = True
    try:
        yield app
    finally:
        app.conf.task_always_eager = False

