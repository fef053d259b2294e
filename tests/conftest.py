"""Grouping for parallel runs (pytest-xdist, ``-n``): the tests of one file run in one
process, so a module's worker cluster starts once, and the reliability suite runs as one
group, since its tests share a Redis database (and kill workers all the time)."""

from __future__ import annotations

from pathlib import Path

import pytest

RELIABILITY = Path(__file__).resolve().parent / "reliability"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        group = "reliability" if RELIABILITY in path.parents else str(path)
        item.add_marker(pytest.mark.xdist_group(group))
