"""Metrics set-up errors: the missing extra and a port already taken, each one clear line."""

from __future__ import annotations

import socket
import sys

import pytest

from flowq import Flowq
from flowq.exceptions import ConfigurationError, MissingExtra
from flowq.runtime.worker import Worker


def worker(port: int) -> Worker:
    app = Flowq("metrics-setup", broker="memory://", backend="memory://metrics-setup",
                worker_metrics_port=port)
    return Worker(app, pool="solo")


def test_without_prometheus_client_the_worker_names_the_extra(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingExtra, match=r"--metrics-port needs prometheus-client: pip "
                                           r"install 'flowq\[metrics\]'"):
        worker(9808)


def test_a_port_already_taken_is_named() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = worker(port).metrics
        assert metrics is not None
        with pytest.raises(ConfigurationError, match=f"cannot serve metrics on "
                                                     f"127.0.0.1:{port}: .*another --metrics"):
            metrics.serve("127.0.0.1", port)
