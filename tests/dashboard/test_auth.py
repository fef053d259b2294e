"""Who may use the dashboard: credentials, loopback, and the refusal to serve open.

Pure tests: the ASGI app is called in-process (its background monitor never starts)."""

from __future__ import annotations

import base64
import warnings

import pytest
from click.testing import CliRunner

with warnings.catch_warnings():  # Starlette prefers another HTTP client for its test client
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from flowq import Flowq
from flowq.cli import main
from flowq.dashboard.auth import Credentials, check_exposure, is_loopback
from flowq.dashboard.server import create_app
from flowq.exceptions import ConfigurationError


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_a_token_is_accepted_as_bearer_or_as_any_users_password() -> None:
    credentials = Credentials(token="s3cret")
    assert credentials.accepts("Bearer s3cret")
    assert credentials.accepts(basic("anyone", "s3cret"))
    for wrong in (None, "", "Bearer nope", basic("anyone", "nope"), "Basic !!notbase64",
                  "Token s3cret"):
        assert not credentials.accepts(wrong), wrong


def test_basic_auth_needs_the_exact_pair() -> None:
    credentials = Credentials(basic="ops:pa:ss")
    assert credentials.accepts(basic("ops", "pa:ss"))
    assert not credentials.accepts(basic("dev", "pa:ss"))
    assert not credentials.accepts("Bearer pa:ss")
    with pytest.raises(ConfigurationError, match="user:password"):
        Credentials(basic="no-colon")
    with pytest.raises(ConfigurationError, match="empty"):
        Credentials(token="  ")


def test_credentials_never_show_in_their_repr() -> None:
    assert "s3cret" not in repr(Credentials(token="s3cret", basic="ops:s3cret"))


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("192.0.2.7", False),
    ("dashboard.example", False)])
def test_only_loopback_addresses_count_as_private(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_it_refuses_to_serve_a_public_address_open() -> None:
    check_exposure("127.0.0.1", Credentials())
    check_exposure("0.0.0.0", Credentials(token="t"))
    with pytest.raises(ConfigurationError, match="refusing to serve the dashboard on 0.0.0.0"):
        check_exposure("0.0.0.0", Credentials())


def test_the_command_refuses_too_before_serving_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWQ_DASHBOARD_TOKEN", raising=False)
    monkeypatch.delenv("FLOWQ_DASHBOARD_AUTH", raising=False)
    result = CliRunner().invoke(main, ["-A", "tests.integration.app:app", "dashboard",
                                       "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code == 2
    assert "refusing to serve the dashboard on 0.0.0.0 without authentication" in result.output
    assert "--token" in result.output


@pytest.fixture
def client() -> TestClient:
    app = Flowq("auth-test", broker="memory://", backend="memory://auth-test")
    return TestClient(create_app(app, credentials=Credentials(token="s3cret")))


def test_every_page_and_api_answers_401_without_credentials(client: TestClient) -> None:
    for path in ("/", "/workflows/x", "/api/config", "/api/workflows", "/static/app.js"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert response.headers["www-authenticate"] == 'Basic realm="flowq"'
    assert client.get("/api/config", headers={"Authorization": "Bearer s3cret"}).json()[
        "actions"] is False
    page = client.get("/workflows", headers={"Authorization": basic("me", "s3cret")})
    assert page.status_code == 200 and "/static/app.js" in page.text


def test_actions_do_not_exist_unless_enabled(client: TestClient) -> None:
    headers = {"Authorization": "Bearer s3cret", "X-Flowq-Action": "1"}
    for path in ("/api/tasks/t1/revoke", "/api/workflows/w1/revoke"):
        assert client.post(path, headers=headers).status_code == 404, path
