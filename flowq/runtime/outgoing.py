"""Building the message for one node of a workflow (see :mod:`flowq.runtime.message`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kombu.serialization import dumps

from flowq.canvas import ids
from flowq.canvas.frozen import thaw
from flowq.exceptions import InvalidWorkflow
from flowq.runtime import signing
from flowq.runtime.message import PROTOCOL, Outgoing, iso, to_timestamp
from flowq.runtime.routing import Router
from flowq.runtime.workflows import Carried
from flowq.settings import Settings

#: Task options that act as defaults for every call of the task.
TASK_CALL_DEFAULTS = ("queue", "priority", "serializer", "expires", "time_limit",
                      "soft_time_limit")


class MessageBuilder:
    """Turns (workflow, node, arguments) into an :class:`Outgoing` message."""

    def __init__(self, conf: Settings, router: Router,
                 task_defaults: Callable[[str], Mapping[str, Any]]):
        self.conf = conf
        self.router = router
        self.task_defaults = task_defaults

    def for_node(self, carried: Carried, position: int, args: Sequence[Any],
                 kwargs: Mapping[str, Any], *, root_id: str, parent_id: str | None,
                 item: tuple[int, int] | None = None, retries: int = 0,
                 task_id: str | None = None, eta: float | None = None,
                 extra: Mapping[str, Any] | None = None) -> Outgoing:
        workflow = carried.workflow
        node = workflow.nodes[position]
        task = node.task or ""
        options = {**self.task_defaults(task), **node.options, **(extra or {})}
        if task_id is None:
            task_id = workflow.node_id(position)
            if item is not None:
                task_id = ids.fanout_item_id(task_id, item[0])
        now = time.time()
        headers: dict[str, Any] = {"flowq": PROTOCOL, "id": task_id, "task": task,
                                   "root_id": root_id, "node": position}
        if parent_id:
            headers["parent_id"] = parent_id
        if retries:
            headers["retries"] = retries
        if item is not None:
            headers["item"] = list(item)
            headers["group"] = workflow.node_id(position)
            headers["group_index"] = item[0]
        else:
            member = workflow.memberships(position)
            if member:
                headers["group"] = workflow.node_id(member[0].join)
                headers["group_index"] = member[0].index
        if eta is None:
            eta = _eta(options, now)
        expires = _expires(options.get("expires"), now)
        check_times(task, eta, expires, now, self.conf.task_max_eta)
        if eta is not None:
            headers["eta"] = iso(eta)
        if expires is not None:
            headers["expires"] = iso(expires)
        soft, hard = options.get("soft_time_limit"), options.get("time_limit")
        if soft is not None or hard is not None:
            headers["timelimit"] = [soft, hard]
        if options.get("shadow"):
            headers["shadow"] = options["shadow"]
        headers.update(carried.headers)
        serializer = options.get("serializer") or self.conf.task_serializer
        content_type, encoding, data = dumps([thaw(args), thaw(kwargs)], serializer=serializer)
        body = data if isinstance(data, bytes) else data.encode(encoding or "utf-8")
        encoding = encoding or "binary"
        if self.conf.security_key:
            signing.sign(headers, body, content_type, encoding, self.conf.security_key,
                         self.conf.security_key_id, now)
        priority = options.get("priority", self.conf.task_default_priority)
        return Outgoing(self.router.queue_for(task, options), headers, body, content_type,
                        encoding, priority, eta)


def check_times(task: str, eta: float | None, expires: float | None, now: float,
                horizon: float) -> None:
    """Refuse times that can never work: a task that would expire before it may run,
    one already expired, or an eta beyond ``task_max_eta`` (likely a unit mistake)."""
    problem = None
    if expires is not None and expires <= now:
        problem = f"expires {iso(expires)} is already past"
    elif expires is not None and eta is not None and expires <= eta:
        problem = f"expires {iso(expires)} is not after its eta {iso(eta)}: it could never run"
    elif eta is not None and eta - now > horizon:
        problem = (f"eta {iso(eta)} is more than task_max_eta ({horizon:.0f}s) ahead; "
                   f"raise task_max_eta if this is intended")
    if problem:
        raise InvalidWorkflow([(task, problem)])


def _eta(options: Mapping[str, Any], now: float) -> float | None:
    if options.get("eta") is not None:
        return to_timestamp(options["eta"], "eta")
    countdown = options.get("countdown")
    return now + float(countdown) if countdown else None


def _expires(value: Any, now: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return now + float(value)
    return to_timestamp(value, "expires")
