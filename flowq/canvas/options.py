"""The options a signature may carry: their types and how they apply inside a workflow.

An option set on a chain, group or chord is a default for the tasks inside it (the
task's own value wins); options given at call time (``apply_async(queue=...)``) win over
both, as in Celery. Three kinds of option do not simply propagate:

* ``ENTRY``: ``countdown``, ``eta`` and ``expires`` delay or bound a workflow's first
  steps, not every step (a chain with ``countdown=10`` starts 10 s late once).
* ``SCOPE``: ``link`` and ``link_error`` attach to the sub-workflow as a whole.
* ``task_id`` names the sub-workflow's result: its output node.

The canvas only carries options; the runtime gives them their effect when it publishes
or runs a node (it reads them from ``Node.options``, a read-only mapping whose dicts are
read-only mappings and lists tuples).
"""

from __future__ import annotations

import datetime
import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from typing import TYPE_CHECKING, Any, Callable, TypedDict

if TYPE_CHECKING:
    from flowq.canvas.signature import Canvas

ENTRY = frozenset({"countdown", "eta", "expires"})
SCOPE = frozenset({"link", "link_error"})
NOT_PROPAGATED = ENTRY | SCOPE | {"task_id"}


def _number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _non_negative(value: Any) -> bool:
    return _number(value) and value >= 0


def _iso(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _moment(value: Any) -> bool:
    return isinstance(value, datetime.datetime) or _iso(value)


def _expiry(value: Any) -> bool:
    return _number(value) or _moment(value)


def _priority(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _maybe_seconds(value: Any) -> bool:
    return value is None or _non_negative(value)


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _json(value: Any) -> bool:
    """A value JSON carries unchanged: str, finite number, bool, None, lists and string-keyed
    objects of those. Checked in a loop, so deep nesting is no RecursionError."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if not all(isinstance(key, str) for key in item):
                return False
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif not (item is None or isinstance(item, (str, bool, int))
                  or (isinstance(item, float) and math.isfinite(item))):
            return False
    return True


def _headers(value: Any) -> bool:
    return isinstance(value, Mapping) and _json(value)


def _names(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and all(_text(name) for name in value)


#: Celery's retry_policy keys (what kombu's ``ensure`` takes) and their checks.
RETRY_POLICY: dict[str, Callable[[Any], bool]] = {
    "max_retries": lambda v: v is None or (_non_negative(v) and isinstance(v, int)),
    "interval_start": _non_negative,
    "interval_step": _non_negative,
    "interval_max": _non_negative,
}


def _retry_policy(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        key in RETRY_POLICY and RETRY_POLICY[key](item) for key, item in value.items())


def _anything(value: Any) -> bool:
    return True


#: option name -> (check, what a valid value looks like)
OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "task_id": (_text, "a non-empty string"),
    "queue": (_text, "a queue name"),
    "priority": (_priority, "an int from 0 to 255 (0-9 is portable)"),
    "countdown": (_non_negative, "seconds >= 0"),
    "eta": (_moment, "a datetime or ISO 8601 string"),
    "expires": (_expiry, "seconds, a datetime or an ISO 8601 string"),
    "time_limit": (_maybe_seconds, "seconds >= 0"),
    "soft_time_limit": (_maybe_seconds, "seconds >= 0"),
    "serializer": (_text, "a serializer name such as 'json'"),
    "shadow": (_text, "a display name"),
    "routing_key": (_string, "a routing key (a string)"),
    "exchange": (_string, "an exchange name (a string; '' is the default exchange)"),
    "headers": (_headers, "an object of string keys to JSON values"),
    "ignore_result": (_flag, "True or False"),
    "retry": (_flag, "True or False (retry publishing if the broker is unreachable)"),
    "retry_policy": (_retry_policy, "an object with some of max_retries (int or None), "
                                    "interval_start, interval_step, interval_max (seconds >= 0)"),
    "link": (_anything, "a signature or a list of signatures"),
    "link_error": (_anything, "a signature or a list of signatures"),
    "stamped_headers": (_names, "a list of stamp names (set by sig.stamp())"),
}
#: Header names stamps travel in: no stamp may be called that.
STAMP_HEADERS = frozenset({"stamped_headers", "stamps"})


def check_options(options: Mapping[str, Any]) -> list[str]:
    """What is wrong with each of ``options``: stamps (the names ``stamped_headers``
    lists, see :mod:`flowq.canvas.stamping`) are checked as stamps, the rest as options."""
    stamps: Any = ()
    if "stamped_headers" in options:
        stamped = options["stamped_headers"]
        stamps = set(stamped) if _names(stamped) else ()
    problems = []
    for name, value in options.items():
        problem = check_stamp(name, value) if name in stamps else check_option(name, value)
        if problem:
            problems.append(problem)
    return problems


def check_stamp(name: Any, value: Any) -> str | None:
    """What is wrong with stamp ``name=value``, or None."""
    if not _text(name):
        return f"a stamp name must be a non-empty string, got {name!r}"
    if name in OPTIONS or name in STAMP_HEADERS:
        return f"stamp {name!r} has the name of a call option; give the stamp another name"
    if not _json(value):
        return (f"stamp {name!r} must be a JSON value (string, number, bool, None, or lists "
                f"and objects of those), got {value!r}")
    return None


def stamp_names(*layers: Mapping[str, Any]) -> tuple[str, ...]:
    """The stamp names of options merged from ``layers`` (every layer's, in order):
    merging options must not let one layer's ``stamped_headers`` hide another's stamps."""
    names: dict[str, None] = {}
    for layer in layers:
        names.update(dict.fromkeys(layer.get("stamped_headers") or ()))
    return tuple(names)


class CallOptions(TypedDict, total=False):
    """The call options of :data:`OPTIONS` for a type checker: ``apply_async(countdwon=5)``
    is reported (with "did you mean"), and so is a value of the wrong type."""

    task_id: str
    queue: str
    priority: int
    countdown: float
    eta: datetime.datetime | str
    expires: float | datetime.datetime | str
    time_limit: float | None
    soft_time_limit: float | None
    serializer: str
    shadow: str
    routing_key: str
    exchange: str
    headers: Mapping[str, Any]
    ignore_result: bool
    retry: bool
    retry_policy: Mapping[str, Any]
    link: Canvas | Iterable[Canvas]
    link_error: Canvas | Iterable[Canvas]
    stamped_headers: Sequence[str]


def check_option(name: str, value: Any) -> str | None:
    """Return what is wrong with option ``name=value``, or None when it is fine."""
    spec = OPTIONS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, OPTIONS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown option {name!r}{hint}"
    check, _ = spec
    return None if check(value) else wrong_type(name, value)


def wrong_type(name: str, value: Any) -> str:
    """``option 'queue' must be a queue name, got 5``."""
    return f"option {name!r} must be {OPTIONS[name][1]}, got {value!r}"


def check_time_limits(options: Mapping[str, Any]) -> str | None:
    """Reject a soft time limit above the hard one, which could never fire."""
    soft, hard = options.get("soft_time_limit"), options.get("time_limit")
    if soft is not None and hard is not None and _number(soft) and _number(hard) \
            and soft > hard:
        return f"soft_time_limit ({soft}) is greater than time_limit ({hard})"
    return None
