"""A Redis Cluster of three masters on loopback, started and stopped by the tests.

Each master is a ``redis-server --cluster-enabled yes`` on a free port (its cluster bus on
port + 10000 must be free too) with its files in a temporary directory; ``redis-cli --cluster
create`` joins them and spreads the 16,384 slots. The servers are stopped by the pids this
module started, never by name.
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import redis

MASTERS = 3
#: A cluster node's bus port is its client port plus this (Redis's fixed offset).
BUS_OFFSET = 10000


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_ports(count: int) -> list[int]:
    """``count`` free client ports whose bus ports (port + 10000) are free as well."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + BUS_OFFSET < 65536 and port not in ports and _port_free(port + BUS_OFFSET):
            ports.append(port)
    return ports


class RedisClusterServers:
    """Three cluster-enabled ``redis-server`` processes of this test run, joined."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.ports = _free_ports(MASTERS)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """The flowq URL of the cluster, naming every master as a seed."""
        return "redis-cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self, timeout: float = 30.0) -> None:
        """Start and join the masters; on any failure stop what was started, then raise."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        for port in self.ports:
            node_dir = self.directory / str(port)
            node_dir.mkdir(exist_ok=True)
            command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                       "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                       "--cluster-node-timeout", "5000", "--dir", str(node_dir),
                       "--save", "", "--appendonly", "no", "--daemonize", "no",
                       "--loglevel", "warning"]
            with open(node_dir / "redis.log", "a") as log:
                self.procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                                   start_new_session=True))
        deadline = time.monotonic() + timeout
        for port in self.ports:
            self._wait(deadline, lambda port=port: self._client(port).ping(),
                       f"redis-server on port {port}")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"127.0.0.1:{port}" for port in self.ports),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=timeout)
        for port in self.ports:
            self._wait(deadline, lambda port=port: self._ready(port),
                       f"cluster_state:ok on port {port}")

    def _client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def _ready(self, port: int) -> bool:
        """The node says the cluster is ok and knows every master's slots."""
        info = self._client(port).cluster("INFO")  # redis-py parses it into a dict
        return (info.get("cluster_state") == "ok"
                and int(info.get("cluster_known_nodes", 0)) == MASTERS
                and int(info.get("cluster_slots_assigned", 0)) == 16384)

    @staticmethod
    def _wait(deadline: float, check, what: str) -> None:  # type: ignore[no-untyped-def]
        while True:
            try:
                if check():
                    return
            except (redis.ConnectionError, redis.ResponseError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Redis Cluster fixture: timed out waiting for {what}")
            time.sleep(0.1)

    def move_slot(self, key: str) -> tuple[int, int]:
        """Move the slot of ``key`` (with its keys) to another master, as a resharding
        does; return the (from, to) ports."""
        slot = int(self._client(self.ports[0]).cluster("KEYSLOT", key))
        ids = {port: self._client(port).cluster("MYID") for port in self.ports}
        ids = {port: value.decode() if isinstance(value, bytes) else value
               for port, value in ids.items()}
        source = next(port for port in self.ports if self._owns(port, slot))
        target = next(port for port in self.ports if port != source)
        self._client(target).execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING",
                                             ids[source])
        self._client(source).execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING",
                                             ids[target])
        while keys := self._client(source).execute_command("CLUSTER", "GETKEYSINSLOT", slot,
                                                           100):
            self._client(source).execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000,
                                                 "KEYS", *keys)
        for port in self.ports:
            self._client(port).execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        return source, target

    def _owns(self, port: int, slot: int) -> bool:
        for start, end, master, *_ in self._client(port).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(master[1]) == port
        return False

    def client(self) -> redis.RedisCluster:
        """A cluster client (the caller closes it)."""
        return redis.RedisCluster(host="127.0.0.1", port=self.ports[0])

    def delete_matching(self, pattern: str) -> None:
        """Delete every key matching the glob ``pattern``, on every master."""
        for port in self.ports:
            client = self._client(port)
            for key in list(client.scan_iter(match=pattern, count=1000)):
                client.delete(key)  # one at a time: the keys of one node span many slots

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait(10)
        self.procs = []
