"""A user's module, type-checked by tests/test_typing.py with mypy, from outside the repo.

Each ``# E:`` comment is an error mypy must report on that line, each ``# N:`` a note
(``reveal_type``); every other line must pass. The file is never run.
"""

# ruff: noqa: F821  (reveal_type is known to mypy only; this file is never run)
from __future__ import annotations

from flowq import AsyncResult, Flowq, Signature, Task, chain, group, shared_task
from flowq.contrib.django import delay_on_commit

app = Flowq("typed")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task(bind=True, max_retries=2)
def fetch(self: Task[[str], bytes], url: str, *, timeout: float = 5.0) -> bytes:
    return url.encode()


@app.task(name="reports.render")
def render(title: str) -> str:
    return title


@shared_task(bind=True)
def charge(self: Task[[int], str], amount: int) -> str:
    return f"charged {amount}"


# -- what must pass ----------------------------------------------------------------------
total: int = add(2, 2)
handle = add.delay(2, 2)
number: int = handle.get(timeout=10)
maybe: int | BaseException = handle.get(timeout=10, propagate=False)
body: bytes = fetch.delay("https://example.com", timeout=1.0).get()
later = add.apply_async((2, 2), countdown=5, queue="reports", priority=9)
checked = add.si(2, 2).apply_async(countdown=5)
eager: AsyncResult[int] = add.apply((1, 2))
partial: Signature[int] = add.s(2)           # partial: the parent's result comes first
workflow = chain(add.s(2, 2), add.s(4), add.s(8))
members = group(add.s(i, i) for i in range(3))
by_id: AsyncResult[int] = add.AsyncResult("a-task-id")
untyped = AsyncResult("a-task-id")
untyped.get()
delay_on_commit(add, 2, 2)
receipt: str = charge.delay(10).get()

reveal_type(add)  # N: Revealed type is "flowq.task.Task[[x: int, y: int], int]"
reveal_type(fetch)  # N: Revealed type is "flowq.task.Task[[url: str, *, timeout: float =], bytes]"
reveal_type(add.delay(1, 2).get())  # N: Revealed type is "int"
reveal_type(add.si(1, 2).delay().get())  # N: Revealed type is "int"
reveal_type(render.s("t"))  # N: Revealed type is "flowq.canvas.signature.Signature[str]"
reveal_type(untyped)  # N: Revealed type is "flowq.result.AsyncResult[Any]"

# -- what must be reported ---------------------------------------------------------------
add.delay("a", 2)  # E: Argument 1 to "delay" of "Task" has incompatible type "str"; expected "int"  [arg-type]
add.delay(1)  # E: Missing positional argument "y" in call to "delay" of "Task"  [call-arg]
add(1, 2, 3)  # E: Too many arguments for "__call__" of "Task"  [call-arg]
add.si(1, "x")  # E: Argument 2 to "si" of "Task" has incompatible type "str"; expected "int"  [arg-type]
fetch.delay(b"bytes")  # E: Argument 1 to "delay" of "Task" has incompatible type "bytes"; expected "str"  [arg-type]
fetch.delay("u", timeout="slow")  # E: Argument "timeout" to "delay" of "Task" has incompatible type "str"; expected "float"  [arg-type]
add.apply_async((1, 2), countdwon=5)  # E: Unexpected keyword argument "countdwon" for "apply_async" of "Task"; did you mean "countdown"?  [call-arg]
add.apply_async((1, 2), priority="high")  # E: Argument "priority" to "apply_async" of "Task" has incompatible type "str"; expected "int"  [arg-type]
wrong: str = add.delay(1, 2).get()  # E: Incompatible types in assignment (expression has type "int", variable has type "str")  [assignment]
render.delay(title=3)  # E: Argument "title" to "delay" of "Task" has incompatible type "int"; expected "str"  [arg-type]
charge.delay("10")  # E: Argument 1 to "delay" of "Task" has incompatible type "str"; expected "int"  [arg-type]
delay_on_commit(add, 2, "2")  # E: Argument 3 to "delay_on_commit" has incompatible type "str"; expected "int"  [arg-type]
