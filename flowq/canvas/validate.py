"""Checks a workflow before it is sent: task names, argument counts, option types.

Every problem names the node by its place in the canvas (``chain[2].chord.header[5]``)
and says what is wrong, so a mistake deep inside a large workflow is found at once
instead of as a ``TypeError`` in a worker hours later.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from flowq.canvas.dag import FANOUT, JOIN, Node, Workflow
from flowq.canvas.options import check_options, check_time_limits


class TaskInfo(Protocol):
    """What validation needs to know about a registered task."""

    name: str

    @property
    def call_signature(self) -> inspect.Signature:
        """The parameters a message's args/kwargs bind to (``self`` excluded)."""


class _Placeholder:
    def __repr__(self) -> str:
        return "…"


_ARG = _Placeholder()


def validate(workflow: Workflow, lookup: Callable[[str], TaskInfo | None],
             known_names: Collection[str] | None = None) -> list[tuple[str, str]]:
    """Return ``(path, problem)`` for everything wrong with ``workflow``.

    ``lookup`` finds a task by name. With ``known_names`` given, a name not found is a
    problem (``app.validate``); without it, unknown names are allowed (a worker may know
    them, as with ``send_task``) and only tasks found are checked.
    """
    problems = _duplicate_ids(workflow)
    for position, node in enumerate(workflow.nodes):
        if node.kind == JOIN:
            continue
        where = _where(node, position)
        if node.options:
            problems.extend((where, problem) for problem in check_options(node.options))
        limits = check_time_limits(node.options)
        if limits:
            problems.append((where, limits))
        info = lookup(node.task) if node.task else None
        if info is None:
            if known_names is not None:
                problems.append((where, unknown_task_message(node.task or "", known_names)))
            continue
        arity = _arity_problem(node, info) if getattr(info, "typing", True) else None
        if arity:
            problems.append((where, arity))
    return problems


def _duplicate_ids(workflow: Workflow) -> list[tuple[str, str]]:
    """Explicit ``task_id``s used twice: the second node's result would be dropped as a
    duplicate delivery and everything after it would wait forever."""
    problems: list[tuple[str, str]] = []
    first = workflow.nodes[0]
    owner = {workflow.seed: first.path or "node #0"}
    for position, node in enumerate(workflow.nodes[1:], 1):
        if node.task_id is None:
            continue
        path = node.path or f"node #{position}"
        if node.task_id in owner:
            problems.append((path, f"task id {node.task_id!r} is already the id of "
                                   f"{owner[node.task_id]}; every node needs its own"))
        else:
            owner[node.task_id] = path
    return problems


def _where(node: Node, position: int) -> str:
    return f"{node.path or f'node #{position}'} ({node.task})"


def unknown_task_message(name: str, known: Collection[str]) -> str:
    """``task 'tasks.ad' is not registered (did you mean 'tasks.add'?)``."""
    close = difflib.get_close_matches(name, list(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"task {name!r} is not registered{hint}"


def takes_failure(signature: inspect.Signature, args: Sequence[Any],
                  kwargs: Mapping[str, Any]) -> bool:
    """Whether an errback task is called Celery's new way, ``(request, exc, traceback)``
    followed by its own ``args``: its function has exactly three required positional
    parameters before those (Celery decides by arity too). Any other errback receives the
    failed task's id."""
    required = [p for p in signature.parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                and p.default is p.empty and p.name not in kwargs]
    return len(required) == 3 + len(args)


def _incoming(node: Node, info: TaskInfo) -> tuple[str, int] | None:
    """What the worker will put in front of the node's own arguments, and how many."""
    if node.immutable:
        return None
    if node.kind == FANOUT:
        return "one item of the list", 1
    if node.deferred:
        if takes_failure(info.call_signature, node.args, node.kwargs):
            return "(request, exc, traceback) of the failed task", 3
        return "the failed task's id", 1
    if node.input is not None:
        return "the parent's result", 1
    return None


def _arity_problem(node: Node, info: TaskInfo) -> str | None:
    received = _incoming(node, info)
    incoming, count = received if received else (None, 0)
    args: list[Any] = [_ARG] * count + list(node.args)
    try:
        info.call_signature.bind(*args, **dict(node.kwargs))
    except TypeError as exc:
        given = [incoming] if incoming else []
        if node.args:
            given.append(f"{len(node.args)} argument{'s' if len(node.args) != 1 else ''}")
        if node.kwargs:
            given.append("keywords " + ", ".join(node.kwargs))
        what = " + ".join(given) or "no arguments"
        return f"{info.name}{info.call_signature} cannot be called with {what}: {exc}"
    return None
