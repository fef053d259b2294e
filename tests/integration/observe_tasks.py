"""Tasks for the observability integration tests (handles, progress, metrics, resume).

Registered on the integration app: ``tests/integration/app.py`` imports this module at
its end. Tasks that must wait for the test block on a gate the test opens (the app's
``gate`` task), so no test depends on how long a sleep takes on a loaded machine.
"""

from __future__ import annotations


from tests.integration.app import add, app, gate, ledger, record


def _key(name: str) -> str:
    from tests.integration import app as app_module

    return f"{app_module.LEDGER_PREFIX}{name}"


@app.task
def gated(value, token="gate"):
    """``gate`` with the value first, so that it can follow a step in a chain: return
    ``value`` once the test opens gate ``token`` (``Cluster.open_gate``)."""
    return gate(token, value)


@app.task(bind=True)
def stepwise(self, steps, token="step"):
    """Report PROGRESS {current, total} before each step; step i waits for the gate
    ``<token>:<i>``; returns ``steps``."""
    for current in range(steps):
        self.update_state(state="PROGRESS", meta={"current": current, "total": steps})
        gate(f"{token}:{current}")
    return steps


@app.task(bind=True)
def flaky(self, value, kind="flaky"):
    """Record the run (``<kind>:<value>``), then fail if ``value`` is in the ledger set
    ``<kind>:fail``, else return ``value``."""
    record(kind, str(value))
    if ledger().sismember(_key(f"{kind}:fail"), str(value)):
        raise ValueError(f"flaky {value} told to fail")
    return value


@app.task(bind=True)
def count_body(self, values, kind="body"):
    """A chord body that records each run and returns how many values it saw."""
    record(kind, self.request.id)
    return [len(values), sum(values)]


@app.task(bind=True)
def sends_a_chain(self):
    """Send a chain from inside a task; return the ids its handle and this task see."""
    handle = (add.s(1, 1) | add.s(2)).delay()
    return {"handle_root": handle.root_id, "own_root": self.request.root_id}
