"""Fixtures: a running worker per broker/backend configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.app import app
from tests.integration.harness import Cluster, require_server


def _require(name: str) -> None:
    require_server("Redis", 6379)  # backends and the ledger live in Redis
    if name == "amqp":
        require_server("RabbitMQ", 5672)


@pytest.fixture(scope="module", params=["redis", "amqp", "embedded"])
def cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Cluster]:
    """A worker (2 prefork children) on one configuration, shared by a test module."""
    _require(request.param)
    instance = Cluster(request.param, tmp_path_factory.mktemp(request.param))
    instance.configure(app)
    instance.start_worker()
    yield instance
    instance.cleanup()
    app.close()


@pytest.fixture
def fresh_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Cluster]:
    """A configuration with no worker started; the test starts (and kills) its own."""
    name = getattr(request, "param", "redis")
    _require(name)
    instance = Cluster(name, tmp_path_factory.mktemp(name))
    instance.configure(app)
    yield instance
    instance.cleanup()
    app.close()


@pytest.fixture(scope="module")
def db14_cluster(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Cluster]:
    """Redis broker, backend and ledger on database 14, with one worker (2 prefork
    children) per test module, started with the module's ``WORKER_ARGS`` and
    ``WORKER_ENV`` if it has them."""
    _require("redis")
    instance = Cluster("redis-db14", tmp_path_factory.mktemp("db14"))
    instance.configure(app)
    instance.start_worker(*getattr(request.module, "WORKER_ARGS", ()),
                          env=getattr(request.module, "WORKER_ENV", None))
    yield instance
    instance.cleanup()
    app.close()


@pytest.fixture
def db14(db14_cluster: Cluster) -> Cluster:
    """The module's database-14 cluster, with this process's app pointed at it again."""
    db14_cluster.configure(app)
    return db14_cluster
