"""backend_from_url: which backend each URL gives."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flowq.exceptions import ConfigurationError
from flowq.runtime.backends import backend_from_url
from flowq.runtime.backends.memory import MemoryBackend
from flowq.runtime.backends.redis import RedisBackend
from flowq.runtime.backends.sqlite import SqliteBackend
from flowq.states import SUCCESS


def test_memory_urls_share_one_store_per_url() -> None:
    first, again = backend_from_url("memory://"), backend_from_url("memory://")
    other = backend_from_url("memory://other")
    assert isinstance(first, MemoryBackend)
    assert first is again
    assert first is not other


def test_no_url_gives_the_embedded_sqlite_file_in_wal_mode(tmp_path: Path) -> None:
    backend = backend_from_url(None, data_dir=str(tmp_path / "data"))
    assert isinstance(backend, SqliteBackend)
    assert backend.path == str(tmp_path / "data" / "results.db")
    backend.store("t", SUCCESS, b"")
    with sqlite3.connect(backend.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_urls_follow_the_sqlalchemy_convention(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    relative = backend_from_url("sqlite:///rel/results.db")
    absolute = backend_from_url(f"sqlite:///{tmp_path}/abs/results.db")
    assert isinstance(relative, SqliteBackend)
    assert isinstance(absolute, SqliteBackend)
    assert relative.path == str(tmp_path / "rel" / "results.db")
    assert absolute.path == str(tmp_path / "abs" / "results.db")
    assert absolute.url == f"sqlite:///{tmp_path}/abs/results.db"


def test_redis_urls_give_the_redis_backend_with_options() -> None:
    backend = backend_from_url("rediss://:pw@127.0.0.1:1/3", key_prefix="app:", retries=0)
    assert isinstance(backend, RedisBackend)
    assert backend.keys.prefix == "app:"


@pytest.mark.parametrize(("url", "named"), [("mongodb://:s3cret-pw@db/results", "'mongodb'"),
                                           ("results.db", "'results.db'")])
def test_unsupported_urls_are_refused_with_the_choices(url: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        backend_from_url(url)
    message = str(raised.value)
    assert named in message
    assert "s3cret-pw" not in message
    assert "sqlite:///" in message
    assert "redis://" in message


def test_a_sqlite_url_without_a_path_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no file path; use sqlite:///"):
        backend_from_url("sqlite://")
