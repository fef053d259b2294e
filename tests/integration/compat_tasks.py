"""Tasks for the Celery-compatibility tests (``tests/integration/test_celery_*.py``).

Registered on the integration app (``tests/integration/app.py`` imports this module at
its end). Each task that a test counts writes to the Redis ledger under a ``kind`` chosen
by the test, so "ran once" is asserted, not guessed. They are written the way Celery
users write tasks.
"""

from __future__ import annotations

from flowq import chain, chord, group
from tests.integration.app import add, app, tsum
from tests.integration.semantics_tasks import push


def _unencodable(what: str, task_id: str | None):
    """A value JSON cannot carry, of the kind Celery code returns."""
    if what == "set":
        return {"ids": {1, 2, 3}}
    if what == "handle":
        return app.AsyncResult(task_id)
    if what == "chain":
        return add.s(1, 1) | add.s(1)
    if what == "group":
        return group(add.s(1, 1), add.s(2, 2))
    if what == "chord":
        return chord([add.s(1, 1)], tsum.s())
    raise ValueError(what)


@app.task(bind=True)
def returns(self, kind, what):
    """Return a value the result serializer cannot carry (a set, a handle, a canvas)."""
    push(kind, self.request.id)
    return _unencodable(what, self.request.id)


@app.task(bind=True, acks_late=True)
def returns_late(self, kind, what):
    """The same, acknowledged after it finishes (a redelivery would run it again)."""
    push(kind, self.request.id)
    return _unencodable(what, self.request.id)


@app.task(bind=True)
def replace_with_nothing(self, kind):
    """Celery's invalid replace: a task replaced by an empty chain."""
    push(kind, self.request.id)
    return self.replace(chain())


@app.task(bind=True, acks_late=True)
def replace_with_nothing_late(self, kind):
    push(kind, self.request.id)
    return self.replace(chain())


@app.task(bind=True)
def replace_with_unsendable(self, kind):
    """A replacement whose arguments cannot be sent (found only when it is published)."""
    push(kind, self.request.id)
    return self.replace(add.s(object(), 1))


@app.task(bind=True, max_retries=3)
def retry_with_unsendable(self, kind):
    """A retry whose new arguments cannot be sent."""
    push(kind, self.request.id)
    raise self.retry(args=(object(),), countdown=0)


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("this exception cannot be shown")


@app.task(bind=True)
def raises_unprintable(self, kind):
    """An exception whose ``str()`` itself raises."""
    push(kind, self.request.id)
    raise Unprintable()


@app.task
def make_set(n):
    """A set: stored by the pickle result serializer, refused by a JSON task message."""
    return set(range(n))


@app.task
def echo(value):
    """Return ``value`` as the worker received it (with its type, under pickle)."""
    return value


@app.task
def type_name(value):
    """The name of the type the worker received (to see what a serializer did)."""
    return type(value).__name__


# -- Celery API (test_celery_api.py) ----------------------------------------------------------


@app.task(bind=True)
def grows_its_chord(self, value, extra):
    """A chord member that adds ``add.s(value, extra)`` to its own chord."""
    self.add_to_chord(add.s(value, extra))
    return value


@app.task
def on_failure(request, exc, traceback, kind):
    """A new-style errback: Celery calls it with the failed task's request, exception
    and traceback (it takes three arguments before its own)."""
    push(kind, f"{request.id}|{request.task}|{request.args}|{type(exc).__name__}|{exc}|"
               f"{'Traceback' in traceback}")


@app.task(bind=True)
def priority_seen(self):
    """The priority this task was sent with, as Celery code reads it."""
    return self.request.delivery_info.get("priority")
