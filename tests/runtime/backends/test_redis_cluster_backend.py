"""What only the Redis Cluster backend does: URLs, slots, the two-step store, NOSCRIPT.

The contract suite (test_backend_contract.py) runs against the cluster too; these tests
cover what a cluster adds, on the test run's own 3-master cluster.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from flowq.exceptions import BackendUnavailable, ConfigurationError
from flowq.runtime.backends import backend_from_url
from flowq.runtime.backends.base import ChordPart, Record
from flowq.runtime.backends.redis_cluster import RedisClusterBackend
from flowq.runtime.keys import ClusterKeys
from flowq.states import FAILURE, SUCCESS
from tests.redis_cluster import RedisClusterServers

CLOSED = "127.0.0.1:1"  # nothing listens on port 1


def test_cluster_urls_give_the_cluster_backend_without_connecting() -> None:
    backend = backend_from_url(f"redis-cluster://:s3cret-pw@{CLOSED},127.0.0.1:2/0"
                               f"?key_prefix=app:", retries=0)
    assert isinstance(backend, RedisClusterBackend)
    assert backend.keys.prefix == "app:"
    assert "s3cret-pw" not in repr(backend)
    assert f"redis-cluster://:**@{CLOSED},127.0.0.1:2/0" in repr(backend)
    backend.close()  # never connected: nothing to do, nothing raised


@pytest.mark.parametrize(("url", "complaint"), [
    (f"redis-cluster://{CLOSED}/3", "only database 0"),
    ("redis-cluster:///", "names no node"),
    ("redis-cluster://127.0.0.1/", "'127.0.0.1' is not host:port"),
    (f"redis-cluster://{CLOSED}/?key_prefix=app:{{x}}:", "flowq places the hash tags"),
])
def test_a_bad_cluster_url_is_refused_saying_what_is_wrong(url: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        backend_from_url(url)


def test_an_unreachable_cluster_raises_backend_unavailable_without_the_password() -> None:
    backend = RedisClusterBackend(f"redis-cluster://:s3cret-pw@{CLOSED}", retries=1,
                                  retry_delay=0.01)
    with pytest.raises(BackendUnavailable) as raised:
        backend.store("t", SUCCESS, b"")
    assert "s3cret-pw" not in str(raised.value)
    assert "2 attempts" in str(raised.value)


def test_a_server_that_is_not_a_cluster_is_a_configuration_error() -> None:
    backend = RedisClusterBackend("redis-cluster://127.0.0.1:6379", retries=0)
    with pytest.raises(ConfigurationError, match="Cluster mode is not enabled"):
        backend.get("t")


def test_a_dead_seed_is_skipped(redis_cluster: RedisClusterServers) -> None:
    url = f"redis-cluster://{CLOSED},127.0.0.1:{redis_cluster.ports[0]}"
    backend = RedisClusterBackend(url, key_prefix="flowq-test-seed:")
    try:
        backend.store("t", SUCCESS, b"found")
        assert backend.get("t") == Record(SUCCESS, b"found")
    finally:
        backend.forget(["t"])
        backend.close()


def test_keys_used_together_share_a_slot_and_the_rest_spread() -> None:
    keys = ClusterKeys("flowq:")
    ids = [f"task-{n}" for n in range(200)]
    for task_id in ids:
        assert key_slot(keys.result(task_id).encode()) == key_slot(
            keys.part_intent(task_id).encode())
    assert key_slot(keys.delay_due.encode()) == key_slot(keys.delay_payloads.encode())
    # results hash by task id: 200 ids fall in far more than one slot range of three
    slots = {key_slot(keys.result(task_id).encode()) for task_id in ids}
    assert len(slots) > 190
    assert {slot * 3 // 16384 for slot in slots} == {0, 1, 2}
    # another prefix's delay index is another slot (deployments do not pile on one)
    assert key_slot(ClusterKeys("other:").delay_due.encode()) != key_slot(
        keys.delay_due.encode())


def _masters_of(backend: RedisClusterBackend, keys: list[str]) -> set[str]:
    client = backend._client
    return {client.get_node_from_key(key).name for key in keys}


def test_wait_hears_results_stored_on_every_master(cluster_backend: RedisClusterBackend) -> None:
    # Given ids whose results live on all three masters
    ids = [f"spread-{n}" for n in range(30)]
    assert len(_masters_of(cluster_backend, [cluster_backend.keys.result(i) for i in ids])) == 3
    # When they are stored from another thread while wait() listens on one connection
    storing = threading.Timer(0.3, lambda: [cluster_backend.store(i, SUCCESS, i.encode())
                                            for i in ids])
    storing.start()
    records = cluster_backend.wait(ids, timeout=30)
    storing.join()
    # Then every one woke it
    assert records == [Record(SUCCESS, i.encode()) for i in ids]


def test_a_part_agrees_with_the_first_record_when_its_store_died_between_steps(
        cluster_backend: RedisClusterBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a chord member whose process stored its success, then died before the part
    cluster_backend.chord_init([("j", 2)])
    cluster_backend.store("m1", SUCCESS, b"r1", part=ChordPart("j", 1, 2, b"v1", "m1"))
    real_part = cluster_backend._scripts["store_part"]

    def die(*args: Any) -> Any:
        raise SystemExit(1)

    monkeypatch.setitem(cluster_backend._scripts, "store_part", die)
    with pytest.raises(SystemExit):
        cluster_backend.store("m0", SUCCESS, b"r0", part=ChordPart("j", 0, 2, b"v0", "m0"))
    monkeypatch.setitem(cluster_backend._scripts, "store_part", real_part)
    assert cluster_backend.chord_values("j") == {1: b"v1"}
    # When its worker records the lost child's failure for it
    outcome = cluster_backend.store("m0", FAILURE, b"lost",
                                    part=ChordPart("j", 0, 2, None, "m0"))
    # Then the record keeps the success, and the chord counts the success, not a failure
    assert not outcome.new and not outcome.first_failure
    assert cluster_backend.get("m0") == Record(SUCCESS, b"r0")
    assert outcome.joined == (b"v0", b"v1")


def test_pipelined_scripts_survive_a_node_that_forgot_them(
        cluster_backend: RedisClusterBackend, redis_cluster: RedisClusterServers) -> None:
    # Given scripts known to every master, then flushed (as after a failover to a new node)
    cluster_backend.chord_init([("warm", 1)])
    for port in redis_cluster.ports:
        redis.Redis(port=port).script_flush()
    # When pipelined calls land on every master
    joins = [(f"j{n}", 2) for n in range(30)]
    assert len(_masters_of(cluster_backend, [cluster_backend.keys.chord(j) for j, _ in joins])) == 3
    cluster_backend.chord_init(joins)
    cluster_backend.store_many([(f"t{n}", FAILURE, b"x") for n in range(30)])
    # Then every one ran
    assert all(cluster_backend.store(f"m{n}", SUCCESS, b"", part=ChordPart(
        f"j{n}", 0, 2, b"v", f"m{n}")).lost is False for n in range(30))
    assert cluster_backend.get_many([f"t{n}" for n in range(30)]) == [Record(FAILURE, b"x")] * 30
