"""Building the message for one node of a workflow (see :mod:`flowq.runtime.message`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from flowq.canvas import ids
from flowq.canvas.dag import TASK, Node, Workflow
from flowq.canvas.frozen import FrozenDict, thaw
from flowq.canvas.options import NOT_PROPAGATED
from flowq.exceptions import InvalidWorkflow
from flowq.runtime import signalling, signing
from flowq.runtime.codec import serialize_call
from flowq.runtime.message import (
    PROTOCOL,
    RESERVED_HEADERS,
    Outgoing,
    PublishPolicy,
    iso,
    to_timestamp,
)
from flowq.runtime.routing import Router
from flowq.runtime.workflows import Carried
from flowq.settings import Settings

#: Task options that act as defaults for every call of the task. Time limits are not
#: copied into messages: the worker reads its own task's limits (so remote control can
#: change them); only limits given for a call travel in the ``timelimit`` header.
TASK_CALL_DEFAULTS = ("queue", "priority", "serializer", "expires")


class MessageBuilder:
    """Turns (workflow, node, arguments) into an :class:`Outgoing` message."""

    def __init__(self, conf: Settings, tasks: Callable[[str], Any], announce: bool = True):
        self.conf = conf
        self.tasks = tasks
        #: send ``before_task_publish`` (not for eager runs, which publish nothing)
        self.announce = announce
        self._router: Router | None = None

    @property
    def router(self) -> Router:
        """Routes from the current settings (rebuilt when ``task_routes`` is replaced)."""
        conf = self.conf
        router = self._router
        if (router is None or router.routes is not conf.task_routes
                or router.default_queue != conf.task_default_queue):
            router = self._router = Router(conf.task_routes, conf.task_default_queue)
        return router

    def task_defaults(self, name: str) -> dict[str, Any]:
        """Options a registered task sets for every call of it (queue, priority, ...)."""
        task = self.tasks(name)
        return {k: getattr(task, k) for k in TASK_CALL_DEFAULTS
                if task is not None and getattr(task, k) is not None}

    def _check_limits(self, name: str, soft: float | None, hard: float | None) -> None:
        """A call's soft limit may not exceed the hard limit that will apply to it."""
        task = self.tasks(name)
        hard = hard if hard is not None else _declared(task, "time_limit")
        soft = soft if soft is not None else _declared(task, "soft_time_limit")
        if soft is not None and hard is not None and soft > hard:
            raise InvalidWorkflow([(name, f"soft_time_limit ({soft}) is greater than the hard "
                                          f"time_limit ({hard}) that applies to this call")])

    def for_node(self, carried: Carried, position: int, args: Sequence[Any],
                 kwargs: Mapping[str, Any], *, root_id: str, parent_id: str | None,
                 item: tuple[int, int] | None = None, retries: int = 0,
                 task_id: str | None = None, eta: float | None = None,
                 extra: Mapping[str, Any] | None = None, errback: bool = False,
                 part: Node | None = None) -> Outgoing:
        """The message running node ``position`` with ``args``/``kwargs``. ``errback``:
        the first three arguments are a failed task's request, exception and traceback
        (as plain values; the worker rebuilds them for a new-style errback). ``part``: the
        task of an ``item`` of join ``position`` (a part added to a chord, or streamed
        into its header), which the workflow does not list: its options travel in the
        ``part_options`` header, so a retry keeps them."""
        workflow = carried.workflow
        node = part or workflow.nodes[position]
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
        self._option_headers(task, options, headers, errback, part)
        headers.update(carried.headers)
        owner = f"task {task!r}" + (f" at {node.path}" if node.path and len(workflow) > 1 else "")
        return self._finish(task, owner, headers, thaw(args), thaw(kwargs), options, eta, now)

    def _option_headers(self, task: str, options: Mapping[str, Any], headers: dict[str, Any],
                        errback: bool, part: Node | None) -> None:
        """Headers that call options ask for: time limits, shadow name, stamps, ..."""
        soft, hard = options.get("soft_time_limit"), options.get("time_limit")
        if soft is not None or hard is not None:
            self._check_limits(task, soft, hard)
            headers["timelimit"] = [soft, hard]
        if options.get("shadow"):
            headers["shadow"] = options["shadow"]
        if options.get("ignore_result"):
            headers["ignore_result"] = True
        if errback:
            headers["errback"] = "request"
        if part is not None:
            headers["part_options"] = thaw({k: v for k, v in part.options.items()
                                            if k not in NOT_PROPAGATED})
        if options.get("headers"):
            headers.update(_custom_headers(task, options["headers"]))
        stamped = options.get("stamped_headers")
        if stamped:
            headers["stamped_headers"] = list(stamped)
            headers["stamps"] = {name: thaw(options.get(name)) for name in stamped}

    def _finish(self, task: str, owner: str, headers: dict[str, Any], args: list[Any],
                kwargs: dict[str, Any], options: Mapping[str, Any], eta: float | None,
                now: float) -> Outgoing:
        """Route, announce (``before_task_publish``), serialize and sign the message
        (``owner`` names it in an encoding error)."""
        exchange, routing_key = options.get("exchange") or "", options.get("routing_key")
        queue = self._queue(task, options, args, kwargs)
        routing_key = (routing_key or queue) if exchange else queue
        priority = options.get("priority", self.conf.task_default_priority)
        policy = _publish_policy(options)
        if self.announce:
            priority = signalling.before_publish(headers, args, kwargs, exchange, routing_key,
                                                 priority, policy)
        if priority is not None:  # the broker's own field is turned around on Redis
            headers["priority"] = priority
        serializer = options.get("serializer") or self.conf.task_serializer
        content_type, encoding, data = serialize_call(args, kwargs, serializer, owner)
        body = data if isinstance(data, bytes) else data.encode(encoding or "utf-8")
        encoding = encoding or "binary"
        if self.conf.security_key:
            signing.sign(headers, body, content_type, encoding, self.conf.security_key,
                         self.conf.security_key_id, now)
        return Outgoing(queue, headers, body, content_type, encoding, priority, eta,
                        exchange=exchange, routing_key=routing_key, policy=policy)

    def queue_of(self, workflow: Workflow, position: int) -> str:
        """The queue the node at ``position`` is sent to (judged by its own arguments:
        a router that looks at the incoming result may choose otherwise)."""
        node = workflow.nodes[position]
        task = node.task or ""
        options = {**self.task_defaults(task), **node.options}
        return self._queue(task, options, list(thaw(node.args)), dict(thaw(node.kwargs)))

    def _queue(self, task: str, options: Mapping[str, Any], args: list[Any],
               kwargs: dict[str, Any]) -> str:
        if options.get("routing_key") and not options.get("exchange") and not options.get(
                "queue"):
            return str(options["routing_key"])  # the default exchange routes by queue name
        return self.router.queue_for(task, tuple(args), kwargs, options)


def part_of(request_task: str, headers: Mapping[str, Any]) -> Node:
    """The task node of a received part (see ``part`` in :meth:`MessageBuilder.for_node`)."""
    return Node(TASK, request_task, options=FrozenDict(headers.get("part_options") or {}))


def _custom_headers(task: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's ``headers`` option, refusing names flowq's own headers use."""
    clashes = sorted(set(given) & RESERVED_HEADERS)
    if clashes:
        raise InvalidWorkflow([(task, f"headers {clashes} are flowq's own; choose other names")])
    return dict(thaw(given))


def _publish_policy(options: Mapping[str, Any]) -> PublishPolicy | None:
    """Celery's per-call ``retry=False`` / ``retry_policy={...}``; None: the settings'."""
    if options.get("retry") is False:
        return PublishPolicy(max_retries=0)
    policy = options.get("retry_policy")
    return PublishPolicy(**policy) if policy else None


def _declared(task: Any, name: str) -> Any:
    return getattr(task, name, None) if task is not None else None


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
