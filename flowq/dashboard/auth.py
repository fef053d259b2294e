"""Who may see the dashboard: anyone on loopback, or the holders of a token or password.

A token is accepted as ``Authorization: Bearer <token>`` (scripts) or as the password of
HTTP basic auth with any user name (browsers prompt for it); ``user:password`` enables
basic auth for that pair. Comparisons take constant time. The dashboard refuses to serve
an address other than loopback without one of them (:func:`check_exposure`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

import attrs
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from flowq.exceptions import ConfigurationError


@attrs.frozen(slots=True)
class Credentials:
    """The token and/or ``user:password`` the dashboard accepts (none: open)."""

    token: str | None = attrs.field(default=None, repr=False)
    basic: str | None = attrs.field(default=None, repr=False)

    def __attrs_post_init__(self) -> None:
        if self.basic is not None and ":" not in self.basic:
            raise ConfigurationError("basic auth must be given as user:password")
        if self.token is not None and not self.token.strip():
            raise ConfigurationError("the dashboard token is empty")

    @property
    def required(self) -> bool:
        return self.token is not None or self.basic is not None

    def accepts(self, authorization: str | None) -> bool:
        if not self.required:
            return True
        scheme, _, value = (authorization or "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.token is not None:
            return _same(value.strip(), self.token)
        if scheme != "basic":
            return False
        try:
            pair = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        _, _, password = pair.partition(":")
        return ((self.basic is not None and _same(pair, self.basic))
                or (self.token is not None and _same(password, self.token)))


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` serves this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_exposure(host: str, credentials: Credentials) -> None:
    """Refuse to serve ``host`` without credentials unless it is loopback."""
    if not is_loopback(host) and not credentials.required:
        raise ConfigurationError(
            f"refusing to serve the dashboard on {host} without authentication: anyone who "
            f"reaches it could read task arguments and results; give --token (or "
            f"FLOWQ_DASHBOARD_TOKEN) or --basic-auth user:password, or bind 127.0.0.1")


class RequireAuth:
    """ASGI middleware: 401 with a basic-auth challenge unless the request authenticates."""

    def __init__(self, app: ASGIApp, credentials: Credentials):
        self.app = app
        self.credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.credentials.accepts(
                Headers(scope=scope).get("authorization")):
            response = PlainTextResponse("authentication required\n", status_code=401,
                                         headers={"WWW-Authenticate": 'Basic realm="flowq"'})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
