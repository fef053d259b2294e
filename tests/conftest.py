"""Grouping for parallel runs (pytest-xdist, ``-n``): the tests of one file run in one
process, so a module's worker cluster starts once, and the reliability suite runs as one
group, since its tests share a Redis database (and kill workers all the time).

Also the Redis Cluster every suite may use (``redis_cluster``): three masters on loopback,
started once per test process and stopped by pid at its end.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_cluster import RedisClusterServers

RELIABILITY = Path(__file__).resolve().parent / "reliability"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        group = "reliability" if RELIABILITY in path.parents else str(path)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterServers]:
    """A 3-master Redis Cluster of this test process (fails in CI without redis-server)."""
    missing = [tool for tool in ("redis-server", "redis-cli") if shutil.which(tool) is None]
    if missing:
        message = f"a Redis Cluster needs {' and '.join(missing)} on PATH"
        if os.environ.get("CI"):
            pytest.fail(message + " (CI installs them: see .ci/run)")
        pytest.skip(message)
    servers = RedisClusterServers(tmp_path_factory.mktemp("redis-cluster"))
    servers.start()
    yield servers
    servers.stop()
