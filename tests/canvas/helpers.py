"""Small helpers shared by the canvas tests."""

from __future__ import annotations

from typing import Any

from flowq.result import GroupResult


def run(canvas: Any, *args: Any, **options: Any) -> Any:
    """Run ``canvas`` eagerly and return its value (raising its error, if it failed)."""
    return canvas.apply(args=args or None, **options).get(timeout=5)


def states(handle: Any) -> dict[str, str]:
    """``{task id: state}`` of every node reachable from a result handle (parents, members)."""
    out: dict[str, str] = {}
    stack = [handle]
    while stack:
        current = stack.pop()
        if current is None or current.id in out:
            continue
        if isinstance(current, GroupResult):
            out[current.id] = current.state
            stack.extend(current.results)
        else:
            out[current.id] = current.state
        stack.append(current.parent)
    return out
