"""Tasks for the canvas tests, registered on one in-memory app.

``RUNS`` counts how many times each task body ran (by function name), so tests can
assert that nothing downstream of a failure ran ("ledgers, not logs"). ``ERRBACKS``
records the arguments every errback received, in call order.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flowq import Flowq

app = Flowq("t", broker="memory://", backend="memory://")

RUNS: Counter[str] = Counter()
ERRBACKS: list[tuple[Any, ...]] = []


def reset() -> None:
    RUNS.clear()
    ERRBACKS.clear()


@app.task
def add(x: int, y: int) -> int:
    RUNS["add"] += 1
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    RUNS["mul"] += 1
    return x * y


@app.task
def neg(x: int) -> int:
    RUNS["neg"] += 1
    return -x


@app.task
def ident(x: Any) -> Any:
    RUNS["ident"] += 1
    return x


@app.task
def const(value: Any = 0) -> Any:
    """Ignores any parent (use as ``const.si(v)``) and returns ``value``."""
    RUNS["const"] += 1
    return value


@app.task
def tsum(values: list[int]) -> int:
    RUNS["tsum"] += 1
    return sum(values)


@app.task
def collect(*values: Any) -> list[Any]:
    RUNS["collect"] += 1
    return list(values)


@app.task
def numbers(n: int) -> list[int]:
    RUNS["numbers"] += 1
    return list(range(n))


@app.task
def process(item: int, factor: int = 10) -> int:
    RUNS["process"] += 1
    return item * factor


@app.task
def fail(*args: Any, message: str = "boom") -> None:
    RUNS["fail"] += 1
    raise ValueError(message)


@app.task
def fail_key(*args: Any) -> None:
    RUNS["fail_key"] += 1
    raise KeyError("missing")


class TwoPartError(Exception):
    """An exception whose constructor needs two arguments (like many library errors)."""

    def __init__(self, code: int, reason: str):
        super().__init__(code, reason)
        self.code, self.reason = code, reason


@app.task
def fail_two(*args: Any) -> None:
    RUNS["fail_two"] += 1
    raise TwoPartError(7, "bad")


@app.task
def errback(failed_id: str, *extra: Any) -> str:
    RUNS["errback"] += 1
    ERRBACKS.append((failed_id, *extra))
    return failed_id


@app.task
def noop() -> None:
    RUNS["noop"] += 1


@app.task
def kw_only(*, x: int) -> int:
    RUNS["kw_only"] += 1
    return x


@app.task(name="custom.renamed")
def renamed(x: int) -> int:
    RUNS["renamed"] += 1
    return x


def total(value: Any) -> int:
    """Sum of every number in a (nested) list, without recursion."""
    out, stack = 0, [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (list, tuple)):
            stack.extend(item)
        else:
            out += item
    return out


MODULUS = 1_000_003


def step_value(k: int, *incoming: Any) -> int:
    """What ``step`` returns: the reference evaluator of the property tests uses it too."""
    return (3 * total(list(incoming)) + k) % MODULUS


@app.task
def step(*args: Any) -> int:
    """``step.s(k)``: ``k`` plus three times whatever it received in front of ``k``."""
    RUNS["step"] += 1
    *incoming, k = args
    return step_value(k, *incoming)


@app.task(bind=True)
def whoami(self: Any, x: Any = None) -> str | None:
    RUNS["whoami"] += 1
    return self.request.id
