"""Task messages: what one node's invocation looks like on the wire, both ways.

Body: ``[args, kwargs]`` in the task serializer (JSON by default). Headers (plain JSON):

====================  =========================================================
``flowq``             protocol version (1); a message without it is rejected
``id``                task id
``task``              task name
``root_id``           id of the workflow's first task (or of the task that started it)
``parent_id``         id of the node whose result this one receives, or of the caller
``group``             join id, when the node is a group member (with ``group_index``)
``retries``           how many times this task was retried
``eta`` / ``expires`` ISO 8601 UTC times, or absent
``timelimit``         ``[soft, hard]`` seconds, or absent
``wf`` / ``wf_ref``   the workflow inline (wire format), or its content hash
``node``              the node's position in the workflow
``item``              ``[index, width]`` for one item of an expanded fanout
``shadow``            the name to show for the task in logs and events
``ignore_result``     ``true`` when the call asked not to store a lone task's result
``errback``           ``"request"``: a new-style errback; its first three arguments are the
                      failed task's request, exception and traceback, as plain values
``part_options``      options of a part added to a chord or streamed into its header (an
                      ``item`` of a join, whose task the workflow does not list)
``priority``          the priority it was sent with (0-9, 9 highest), when one was
                      (``self.request.delivery_info["priority"]``, on every broker)
``stamped_headers``   the names of the task's stamps (``sig.stamp(...)``)
``stamps``            ``{name: value}`` of those stamps
====================  =========================================================

Headers a caller adds with ``apply_async(headers={...})`` travel beside these (a name
flowq uses is refused) and reach the task as ``self.request.headers``.

A single task outside any workflow carries no ``wf``: the worker rebuilds the one-node
workflow from ``task``.
"""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Collection, Mapping
from typing import Any

import attrs

from flowq.exceptions import (
    ContentDisallowed,
    MalformedMessage,
    MessageTooLarge,
    UnsupportedProtocol,
)

PROTOCOL = 1
_REQUIRED = ("id", "task", "root_id")
#: Header names flowq (and kombu) set: a caller's ``headers`` option may not use them.
RESERVED_HEADERS = frozenset({
    "flowq", "id", "task", "root_id", "parent_id", "group", "group_index", "retries", "eta",
    "expires", "timelimit", "wf", "wf_ref", "node", "item", "shadow", "ignore_result",
    "priority", "errback", "part_options", "stamped_headers", "stamps", "redelivered",
    "x-flowq-signature"})


@attrs.frozen(slots=True)
class PublishPolicy:
    """How often and how patiently to retry publishing on a dropped connection (Celery's
    ``retry_policy``): ``max_retries`` (None: until it works), then waits of
    ``interval_start + n * interval_step`` seconds, at most ``interval_max``."""

    max_retries: int | None = 5
    interval_start: float = 0.2
    interval_step: float = 0.4
    interval_max: float = 2.0

    def wait(self, attempt: int) -> float:
        return min(self.interval_start + attempt * self.interval_step, self.interval_max)


@attrs.frozen(slots=True)
class Outgoing:
    """A message ready to publish (or, with a future ``eta``, to hold until due)."""

    queue: str
    headers: dict[str, Any]
    body: bytes
    content_type: str
    content_encoding: str
    priority: int | None = None
    eta: float | None = None
    #: ``""`` is the default exchange, which routes by queue name.
    exchange: str = ""
    routing_key: str | None = None
    #: None: the settings' policy (``broker_connection_retry``/``_max_retries``).
    policy: PublishPolicy | None = None

    @property
    def id(self) -> str:
        return self.headers["id"]  # type: ignore[no-any-return]


@attrs.frozen(slots=True)
class Request:
    """A received task message whose headers passed validation."""

    id: str
    task: str
    root_id: str
    parent_id: str | None
    retries: int
    eta: float | None
    expires: float | None
    soft_time_limit: float | None
    time_limit: float | None
    node: int
    item: tuple[int, int] | None
    group: str | None
    group_index: int | None
    headers: Mapping[str, Any]
    body: bytes
    content_type: str
    content_encoding: str
    #: the task's stamps (``stamped_headers`` and ``stamps`` headers), by name
    stamps: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def name(self) -> str:
        """The task's name (Celery's request has it as ``name``)."""
        return self.task

    @property
    def stamped_headers(self) -> list[str]:
        return list(self.stamps)

    @property
    def workflow_header(self) -> Any:
        return self.headers.get("wf")

    @property
    def workflow_ref(self) -> str | None:
        return self.headers.get("wf_ref")


def to_timestamp(value: Any, field: str) -> float | None:
    """An ISO 8601 string, datetime or epoch number as epoch seconds (naive = UTC)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.datetime.fromisoformat(value)
        except ValueError:
            raise MalformedMessage(f"header {field!r} is not an ISO 8601 time: {value[:40]!r}")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.timestamp()
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    raise MalformedMessage(f"header {field!r} must be a time, got {type(value).__name__}")


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat()


def _text(headers: Mapping[str, Any], field: str, required: bool = True) -> str | None:
    value = headers.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise MalformedMessage(f"header {field!r} is missing or not a non-empty string")
    return value


def _count(headers: Mapping[str, Any], field: str, default: int | None) -> int | None:
    value = headers.get(field, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MalformedMessage(f"header {field!r} must be an integer >= 0, got {value!r}")
    return value


def _limits(value: Any) -> tuple[float | None, float | None]:
    if value is None:
        return None, None
    if (not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0)
            for v in value)):
        raise MalformedMessage(f"header 'timelimit' must be [soft, hard] seconds, got {value!r}")
    return value[0], value[1]


def _item(value: Any, max_width: int) -> tuple[int, int] | None:
    if value is None:
        return None
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not 0 <= value[0] < value[1] <= max_width):
        raise MalformedMessage(f"header 'item' must be [index, width] with 0 <= index < width "
                               f"<= {max_width}, got {value!r}")
    return value[0], value[1]


def parse(headers: Mapping[str, Any] | None, body: bytes, content_type: str | None,
          content_encoding: str | None, accept: Collection[str],
          max_width: int = 1_000_000) -> Request:
    """Validate a received message's envelope; nothing is deserialized here.

    Raises :class:`ContentDisallowed` for a content type outside ``accept`` (checked
    first, so no deserializer ever sees it), :class:`UnsupportedProtocol` for a missing
    or newer protocol, :class:`MalformedMessage` for any header of the wrong shape.
    """
    if not content_type or content_type not in accept:
        raise ContentDisallowed(f"content type {content_type!r} is not accepted "
                                f"(accept_content: {sorted(accept)})")
    if not isinstance(headers, Mapping):
        raise UnsupportedProtocol("message has no headers: not a flowq task message")
    version = headers.get("flowq")
    if version != PROTOCOL:
        problem = "has no protocol version" if version is None else f"has protocol {version!r}"
        raise UnsupportedProtocol(f"message {problem}; this worker speaks protocol {PROTOCOL}")
    for field in _REQUIRED:
        _text(headers, field)
    soft, hard = _limits(headers.get("timelimit"))
    wf, ref = headers.get("wf"), headers.get("wf_ref")
    if wf is not None and not isinstance(wf, dict):
        raise MalformedMessage("header 'wf' must be a workflow object")
    if ref is not None and (not isinstance(ref, str) or not ref.isalnum() or len(ref) > 128):
        raise MalformedMessage("header 'wf_ref' must be a content hash")
    if not isinstance(body, (bytes, str)):
        raise MalformedMessage(f"message body must be bytes, got {type(body).__name__}")
    return Request(
        id=headers["id"], task=headers["task"], root_id=headers["root_id"],
        parent_id=_text(headers, "parent_id", required=False),
        retries=_count(headers, "retries", 0) or 0,
        eta=to_timestamp(headers.get("eta"), "eta"),
        expires=to_timestamp(headers.get("expires"), "expires"),
        soft_time_limit=soft, time_limit=hard,
        node=_count(headers, "node", 0) or 0,
        item=_item(headers.get("item"), max_width),
        group=_text(headers, "group", required=False),
        group_index=_count(headers, "group_index", None),
        headers=headers, body=body if isinstance(body, bytes) else body.encode(),
        content_type=content_type, content_encoding=content_encoding or "utf-8",
        stamps=_stamps(headers))


def _stamps(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``{name: value}`` for each name ``stamped_headers`` lists, from ``stamps``."""
    names = headers.get("stamped_headers")
    if names is None:
        return {}
    values = headers.get("stamps")
    if (not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
            or not isinstance(values, dict)):
        raise MalformedMessage("headers 'stamped_headers' and 'stamps' must be a list of "
                               "names and an object of their values")
    return {name: values.get(name) for name in names}


def check_size(headers: Mapping[str, Any] | None, body: bytes | str, header_limit: int,
                body_limit: int, advice: bool = False) -> None:
    """Raise MessageTooLarge for headers or a body over their budget: before publishing
    (``advice`` adds what to do) and on arrival from publishers that did not check."""
    header_bytes = len(json.dumps(headers or {}, separators=(",", ":"), default=str))
    task = (headers or {}).get("task")
    if header_bytes > header_limit:
        raise MessageTooLarge(
            f"message headers of task {task!r} are {header_bytes} bytes, over "
            f"message_header_limit ({header_limit})" + (
                "; lower workflow_inline_limit so large workflows travel by reference"
                if advice else ""))
    if len(body) > body_limit:
        raise MessageTooLarge(
            f"message body of task {task!r} is {len(body)} bytes, over message_body_limit "
            f"({body_limit})" + ("; pass a reference (a key or URL) instead of the data"
                                 if advice else ""))


def decode_body(request: Request, accept: Collection[str]) -> tuple[list[Any], dict[str, Any]]:
    """Deserialize ``[args, kwargs]``; a body of any other shape is MalformedMessage."""
    from kombu.serialization import loads

    try:
        body = loads(request.body, request.content_type, request.content_encoding,
                     accept=accept)
    except Exception as exc:
        raise MalformedMessage(f"message body does not decode as {request.content_type}: "
                               f"{type(exc).__name__}: {str(exc)[:200]}") from None
    if (not isinstance(body, (list, tuple)) or len(body) != 2
            or not isinstance(body[0], (list, tuple)) or not isinstance(body[1], dict)):
        raise MalformedMessage(f"message body must be [args, kwargs], got {_short(body)}")
    return list(body[0]), dict(body[1])


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"
