"""The Celery 5.7 app that ``python -m bench compare`` runs beside flowq's ``bench.app``.

The same tasks under the same names, configured from the environment the comparison sets:
``CELERY_BENCH_URL`` (broker and result backend, one Redis database), ``CELERY_BENCH_QUEUE``
and ``CELERY_BENCH_PREFIX`` (a key prefix for results, so a run deletes only its own keys).
Celery keeps its defaults otherwise (JSON, prefetch multiplier 4, early ack), as flowq does.
Installed only with the bench extra: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.ledger import tick_ledger

app = Celery("bench", broker=os.environ.get("CELERY_BENCH_URL", "redis://127.0.0.1:6379/13"),
             backend=os.environ.get("CELERY_BENCH_URL", "redis://127.0.0.1:6379/13"))
app.conf.update(
    task_default_queue=os.environ.get("CELERY_BENCH_QUEUE", "celery-bench"),
    result_backend_transport_options={
        "global_keyprefix": os.environ.get("CELERY_BENCH_PREFIX", "celery-bench:")},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="bench.add")
def add(x, y):
    return x + y


@app.task(name="bench.tsum")
def tsum(numbers):
    return sum(numbers)


@app.task(name="bench.noop")
def noop():
    return None


@app.task(name="bench.tick", ignore_result=True)
def tick():
    """Count one run in the ledger (the drain workload's results are ignored)."""
    tick_ledger()
