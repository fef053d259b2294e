"""kombu's message envelope as stored by flowq's transports: checked when read, never trusted.

A transport that keeps messages itself (Redis, SQLite) stores kombu's message dict as JSON::

    {"body": "<base64>", "content-type": ..., "content-encoding": ..., "headers": {...},
     "properties": {"body_encoding": "base64", "priority": 0, "delivery_info": {...}, ...}}

Anything can end up in a queue (a foreign client, a truncated write, a bug), and kombu
fails deep inside its consumer on an envelope it cannot read, taking the worker with it.
:func:`decode` checks everything kombu will rely on, so a bad entry is refused with a
precise reason *before* kombu sees it; :func:`dead_letter` wraps its raw bytes in a valid
envelope for the queue's dead letters, where it is kept for a human to look at.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from kombu.utils.json import dumps, loads
from kombu.utils.uuid import uuid

from flowq.runtime.broker import DEAD_LETTER_SUFFIX, REASON_HEADER

__all__ = ["UndecodableEntry", "dead_letter", "decode"]

#: Body encodings kombu's virtual transports know (None and utf-8 mean "as is").
_PLAIN = (None, "utf-8", "utf8")
#: How much of a bad entry a reason quotes.
_QUOTE = 80


class UndecodableEntry(ValueError):
    """A stored entry that is not a kombu envelope flowq's transports can deliver."""


def decode(raw: bytes | str) -> dict[str, Any]:
    """The envelope stored as ``raw``, checked; raises UndecodableEntry saying what is wrong."""
    try:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8")
        elif not raw.isascii():
            raw.encode("utf-8")  # lone surrogates: bytes that were not UTF-8
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        raise UndecodableEntry(f"not UTF-8 ({exc.reason} at position {exc.start})") from None
    try:
        payload = loads(raw)
    except ValueError as exc:
        raise UndecodableEntry(f"not JSON ({exc}): {raw[:_QUOTE]!r}") from None
    if not isinstance(payload, dict):
        raise UndecodableEntry(f"not a kombu envelope (a JSON {type(payload).__name__}, "
                               f"not an object): {raw[:_QUOTE]!r}")
    properties = payload.setdefault("properties", {})
    if not isinstance(properties, dict):
        raise UndecodableEntry("not a kombu envelope: 'properties' is not an object")
    for field, kinds in (("headers", dict), ("content-type", str), ("content-encoding", str)):
        if payload.get(field) is not None and not isinstance(payload[field], kinds):
            raise UndecodableEntry(f"not a kombu envelope: {field!r} is a "
                                   f"{type(payload[field]).__name__}")
    if not isinstance(properties.setdefault("delivery_info", {}), dict):
        raise UndecodableEntry("not a kombu envelope: 'delivery_info' is not an object")
    _check_body(payload.get("body"), properties.get("body_encoding"))
    return payload


def _check_body(body: Any, encoding: Any) -> None:
    if body is None:
        return
    if not isinstance(body, str):
        raise UndecodableEntry(f"not a kombu envelope: 'body' is a {type(body).__name__}")
    if encoding in _PLAIN:
        return
    if encoding != "base64":
        raise UndecodableEntry(f"unknown body_encoding {encoding!r} (kombu knows base64)")
    try:
        base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UndecodableEntry(f"body is not valid base64 ({exc}): {body[:_QUOTE]!r}") from None


def dead_letter(raw: bytes, queue: str, reason: str, **headers: str) -> dict[str, Any]:
    """A valid envelope for ``<queue>.dead`` carrying ``raw`` untouched as its body, with
    the reason (and any ``headers``, e.g. where the entry was) as headers."""
    dead = queue + DEAD_LETTER_SUFFIX
    return {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-type": "application/octet-stream",
        "content-encoding": "binary",
        "headers": {REASON_HEADER: f"UndecodableEntry: {reason}", "x-flowq-queue": queue,
                    **headers},
        "properties": {"body_encoding": "base64", "delivery_mode": 2, "priority": 0,
                       "delivery_tag": uuid(),
                       "delivery_info": {"exchange": dead, "routing_key": dead}},
    }


def encode(payload: dict[str, Any]) -> str:
    """The JSON a transport stores for ``payload`` (what :func:`decode` reads back)."""
    return str(dumps(payload))
