"""Message signing: an HMAC-SHA256 over the whole message, checked before anything runs.

Turned on by setting ``security_key`` (and ``security_key_id``); workers then require
a valid signature on every task message. The signature covers the body, the content
type and encoding, and every header except those whose names start with ``x-`` (and
kombu's ``redelivered``), which brokers add or change in transit (``x-death``,
``x-delivery-count``) and flowq acts on only to count a quorum queue's deliveries. So changing one byte of the body, the
task name, the eta, the retries or the workflow (its callbacks) invalidates the message,
while broker bookkeeping does not.

The signature header is ``x-flowq-signature: v1:<key id>:<unix time>:<hex digest>``.
A message older than ``security_message_ttl`` (counted from its eta, if later) is
refused, so a captured message cannot be replayed later; ``security_keys`` may list
older keys by id during a key rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from flowq.exceptions import InvalidSignature

HEADER = "x-flowq-signature"
VERSION = "v1"
_UNSIGNED = frozenset({"redelivered"})


def _signed_headers(headers: Mapping[str, Any]) -> bytes:
    kept = {k: v for k, v in headers.items() if not k.startswith("x-") and k not in _UNSIGNED}
    return json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      default=str).encode()


def _digest(key: str, key_id: str, stamp: str, headers: Mapping[str, Any], body: bytes,
            content_type: str, content_encoding: str) -> str:
    mac = hmac.new(key.encode(), digestmod=hashlib.sha256)
    for part in (VERSION, key_id, stamp, content_type, content_encoding):
        mac.update(part.encode() + b"\n")
    mac.update(_signed_headers(headers) + b"\n")
    mac.update(body)
    return mac.hexdigest()


def sign(headers: dict[str, Any], body: bytes, content_type: str, content_encoding: str,
         key: str, key_id: str, now: float | None = None) -> None:
    """Add the signature header to ``headers`` (in place)."""
    stamp = f"{now if now is not None else time.time():.3f}"
    digest = _digest(key, key_id, stamp, headers, body, content_type, content_encoding)
    headers[HEADER] = f"{VERSION}:{key_id}:{stamp}:{digest}"


def verify(headers: Mapping[str, Any], body: bytes, content_type: str,
           content_encoding: str, keys: Mapping[str, str], ttl: float | None,
           eta: float | None = None, now: float | None = None) -> None:
    """Raise :class:`InvalidSignature` unless the message carries a valid, fresh signature."""
    value = headers.get(HEADER)
    if not value:
        raise InvalidSignature("message is not signed, and this worker requires signatures")
    if not isinstance(value, str):
        raise InvalidSignature("signature header is not a string")
    parts = value.split(":")
    if len(parts) != 4 or parts[0] != VERSION:
        raise InvalidSignature(f"signature header is garbled: {value[:80]!r}")
    _, key_id, stamp, digest = parts
    key = keys.get(key_id)
    if key is None:
        raise InvalidSignature(f"message signed with unknown key id {key_id!r}")
    try:
        signed_at = float(stamp)
    except ValueError:
        raise InvalidSignature(f"signature time {stamp[:20]!r} is not a number") from None
    expected = _digest(key, key_id, stamp, headers, body, content_type, content_encoding)
    if not hmac.compare_digest(expected, digest):
        raise InvalidSignature("signature does not match the message (it was changed, or "
                               "signed with another key)")
    if ttl is not None:
        age = (now if now is not None else time.time()) - max(signed_at, eta or 0.0)
        if age > ttl:
            raise InvalidSignature(f"signed message is {age:.0f}s old, older than "
                                   f"security_message_ttl ({ttl:.0f}s): refusing a replay")


def keyring(primary: str | None, key_id: str, others: Mapping[str, str] | None) -> dict[str, str]:
    """Every key a worker accepts, by id."""
    keys = dict(others or {})
    if primary:
        keys[key_id] = primary
    return keys
