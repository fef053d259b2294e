"""Django: send a task only once the current database transaction has committed.

A task sent inside ``transaction.atomic()`` may start before the transaction commits
and not find the rows it was sent about (or run for rows a rollback removed).
:func:`delay_on_commit` waits for the commit with Django's ``transaction.on_commit``;
outside a transaction it sends at once. As with Celery's ``delay_on_commit``, nothing
is returned: the task id does not exist until the commit.

::

    from django.db import transaction
    from flowq.contrib.django import delay_on_commit

    with transaction.atomic():
        order = Order.objects.create(...)
        delay_on_commit(send_receipt, order.pk)    # sent after COMMIT, never on ROLLBACK
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Unpack

from flowq.canvas.options import CallOptions
from flowq.typevars import P, R

if TYPE_CHECKING:
    from flowq.task import Task


def delay_on_commit(task: Task[P, R], *args: P.args, **kwargs: P.kwargs) -> None:
    """``task.delay(*args, **kwargs)`` when the default database's transaction commits
    (arguments type-checked like ``delay``)."""
    from django.db import transaction

    transaction.on_commit(functools.partial(task.delay, *args, **kwargs))


def apply_async_on_commit(task: Task[Any, Any], args: Iterable[Any] | None = None,
                          kwargs: Mapping[str, Any] | None = None, *,
                          using: str | None = None, **options: Unpack[CallOptions]) -> None:
    """``task.apply_async(args, kwargs, **options)`` when the transaction of database
    ``using`` (default: the default database) commits."""
    from django.db import transaction

    transaction.on_commit(functools.partial(task.apply_async, args, kwargs, **options),
                          using=using)
