"""What only the Redis backend does: URLs, secrets, round trips, errors and fork safety
(some on the Redis Cluster backend too)."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest
import redis

from flowq.exceptions import BackendUnavailable
from flowq.runtime.backends.base import ChordPart, Record
from flowq.runtime.backends.redis import RedisBackend
from flowq.states import FAILURE, SUCCESS

CLOSED_PORT_URL = "redis://:s3cret-pw@127.0.0.1:1/0"  # nothing listens on port 1


def test_the_password_never_shows_in_repr_or_url() -> None:
    for url in (CLOSED_PORT_URL, "rediss://user:s3cret-pw@127.0.0.1:1/2?key_prefix=app:"):
        backend = RedisBackend(url)
        assert "s3cret-pw" not in repr(backend)
        assert "s3cret-pw" not in backend.url
        assert "127.0.0.1:1" in repr(backend)


def test_an_unreachable_server_raises_backend_unavailable_without_the_password() -> None:
    backend = RedisBackend(CLOSED_PORT_URL, retries=2, retry_delay=0.01)
    with pytest.raises(BackendUnavailable) as raised:
        backend.store("t", SUCCESS, b"")
    message = str(raised.value)
    assert "s3cret-pw" not in message
    assert "redis://:**@127.0.0.1:1/0" in message
    assert "3 attempts" in message


def test_a_dropped_connection_is_retried(redis_backend: RedisBackend,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    redis_backend.store("t", SUCCESS, b"kept")
    failures = [redis.ConnectionError("dropped")]
    real_mget = redis_backend._client.mget

    def flaky_mget(*args: Any, **kwargs: Any) -> Any:
        if failures:
            raise failures.pop()
        return real_mget(*args, **kwargs)

    monkeypatch.setattr(redis_backend._client, "mget", flaky_mget)
    assert redis_backend.get("t") == Record(SUCCESS, b"kept")


@pytest.mark.parametrize(("kind", "scripts"), [
    ("redis", ("store", "flag_set")),
    ("redis-cluster", ("store_record", "store_part", "flag_set")),  # store's two steps
])
def test_a_retry_after_a_lost_reply_gets_the_same_answer(
        kind: str, scripts: tuple[str, ...], request: pytest.FixtureRequest,
        monkeypatch: pytest.MonkeyPatch) -> None:
    redis_backend: RedisBackend = request.getfixturevalue(
        "redis_backend" if kind == "redis" else "cluster_backend")
    # Given scripts whose first reply is lost after the server ran them
    for name in scripts:
        script = redis_backend._scripts[name]
        replies_lost = [redis.ConnectionError("reply lost")]

        def run_then_drop(*args: Any, script: Any = script, lost: list = replies_lost) -> Any:
            reply = script(*args)
            if lost:
                raise lost.pop()
            return reply

        monkeypatch.setitem(redis_backend._scripts, name, run_then_drop)
    redis_backend.chord_init([("j", 2)])
    # When each is retried, it still reports what its own first run did
    failed = redis_backend.store("m0", FAILURE, b"boom", part=ChordPart("j", 0, 2, None, "m0"))
    assert (failed.new, failed.first_failure) == (True, True)
    assert redis_backend.set_flag("once")
    # And a different call still sees the write as someone else's
    again = redis_backend.store("m0", FAILURE, b"boom", part=ChordPart("j", 0, 2, None, "m0"))
    assert (again.new, again.first_failure) == (False, False)
    assert not redis_backend.set_flag("once")


def test_the_key_prefix_comes_from_the_url_or_the_argument(redis_url: str,
                                                           key_prefix: str) -> None:
    from_url = RedisBackend(f"{redis_url}?key_prefix={key_prefix}")
    from_url.store("t", SUCCESS, b"")
    assert from_url.keys.prefix == key_prefix
    client = redis.Redis.from_url(redis_url)
    assert client.exists(f"{key_prefix}r:t")
    argument = RedisBackend(f"{redis_url}?key_prefix=ignored:", key_prefix=key_prefix)
    assert argument.get("t") == Record(SUCCESS, b"")
    client.close()


def test_storing_a_result_with_its_chord_part_is_one_round_trip(
        redis_backend: RedisBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    redis_backend.chord_init([("j", 2)])
    redis_backend.store("warm-up", SUCCESS, b"")  # loads the script once
    commands: list[object] = []
    real = redis_backend._client.execute_command

    def counting(*args: Any, **kwargs: Any) -> Any:
        commands.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(redis_backend._client, "execute_command", counting)
    redis_backend.store("m0", SUCCESS, b"v", part=ChordPart("j", 0, 2, b"v", "m0"))
    assert commands == ["EVALSHA"]


def test_wait_works_in_a_forked_child(redis_backend: RedisBackend) -> None:
    # Given a parent whose wait() left an idle subscription connection behind
    threading.Timer(0.1, lambda: redis_backend.store("parent", SUCCESS, b"p")).start()
    assert redis_backend.wait(["parent"], timeout=30) == [Record(SUCCESS, b"p")]
    context = multiprocessing.get_context("fork")

    # When a forked child waits with the inherited backend
    def child() -> None:
        got = redis_backend.wait(["for-child"], timeout=30)
        redis_backend.store("from-child", SUCCESS, got[0].payload)

    process = context.Process(target=child)
    process.start()
    threading.Timer(0.2, lambda: redis_backend.store("for-child", SUCCESS, b"c")).start()
    # Then both it and the parent keep working
    assert redis_backend.wait(["from-child"], timeout=30) == [Record(SUCCESS, b"c")]
    process.join(timeout=30)
    assert process.exitcode == 0
