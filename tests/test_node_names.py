"""Node names from ``flowq worker -n``: Celery's host codes, and the parts filled in."""

from __future__ import annotations

import pytest

from flowq.runtime.worker import expand_hostname

HOST = "box.example.com"


@pytest.fixture(autouse=True)
def host(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine is ``box.example.com`` for every test here."""
    monkeypatch.setattr("socket.gethostname", lambda: HOST)


@pytest.mark.parametrize("given, node", [
    ("w1@%h", "w1@box.example.com"),
    ("%n@%h", "box@box.example.com"),
    ("w2@%n", "w2@box"),
    ("w3@%n.%d", "w3@box.example.com"),
    ("w4@%d", "w4@example.com"),
    ("w5@other.host", "w5@other.host"),
])
def test_host_codes_are_celerys(given: str, node: str) -> None:
    assert expand_hostname(given) == node


@pytest.mark.parametrize("given, node", [
    (None, "flowq@box.example.com"),
    ("", "flowq@box.example.com"),
    ("w2", "w2@box.example.com"),
    ("@elsewhere", "flowq@elsewhere"),
    ("w3@", "w3@box.example.com"),
])
def test_missing_parts_are_filled_in(given: str | None, node: str) -> None:
    assert expand_hostname(given) == node


def test_log_file_codes_stay_for_the_log_file() -> None:
    assert expand_hostname("w1-%i%I@%h") == "w1-%i%I@box.example.com"


def test_a_host_without_domain_has_an_empty_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "box")
    assert expand_hostname("%n@%h%d") == "box@box"
