"""The type variables of flowq's generic classes: a task's parameters and its result.

``Task[P, R]`` is generic over its function's parameters (``P``) and return type (``R``);
``Signature[R]`` and ``AsyncResult[R]`` carry ``R`` on to ``get()``. For a type checker
both have the default ``Any`` (PEP 696), so ``AsyncResult(task_id)`` written without a
type argument is ``AsyncResult[Any]``, not an error; at run time they are plain type
variables (no dependency on ``typing_extensions``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import ParamSpec, TypeVar

    P = ParamSpec("P", default=...)
    R = TypeVar("R", default=Any)
else:
    from typing import ParamSpec, TypeVar

    P = ParamSpec("P")
    R = TypeVar("R")

__all__ = ["P", "R"]
