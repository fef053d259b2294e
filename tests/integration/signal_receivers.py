"""Receivers of every signal, written as a Celery integration would write them, each
recording what it got (and in which process) in the ledger list ``signals``.

Connected in workers started with ``FLOWQ_TEST_SIGNALS=1`` (and by the signal tests in
their own process, for the publishing signals); with ``FLOWQ_TEST_OWN_LOGGING=1`` a
``setup_logging`` receiver also configures logging itself, with :data:`OWN_FORMAT`.
Also the tasks the signal and stamping tests run.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

from flowq import signals
from flowq.task import current_request
from tests.integration.app import app
from tests.integration.app import gate as wait_for_gate
from tests.integration.semantics_tasks import push

OWN_FORMAT = "OWN-LOGGING %(levelname)s %(name)s: %(message)s"
RECEIVER_ERROR = "receiver broke on purpose"


def record(signal: str, **fields: Any) -> None:
    push("signals", json.dumps({"signal": signal, "pid": os.getpid(), **fields}, default=repr))


def _name(sender: Any) -> Any:
    return getattr(sender, "name", sender)


# -- publishing -------------------------------------------------------------------------------


def before_publish(sender=None, body=None, exchange=None, routing_key=None, headers=None,
                   properties=None, declare=None, retry_policy=None, **kwargs):
    # what a tracing integration does: the current trace goes with every message sent
    # (the test process starts one for ``traced``; a worker passes it on to next steps)
    request = current_request()
    trace = getattr(request, "traceparent", None) if request else None
    if trace is None and sender == traced.name and "traceparent" not in headers:
        trace = f"trace-{headers['id']}"
    if trace is not None:
        headers["traceparent"] = trace
    record("before_task_publish", sender=sender, id=headers["id"], args=body[0],
           kwargs=body[1], exchange=exchange, routing_key=routing_key,
           properties=sorted(properties), declare=declare, retry_policy=retry_policy)


def after_publish(sender=None, body=None, exchange=None, routing_key=None, headers=None,
                  **kwargs):
    record("after_task_publish", sender=sender, id=headers["id"], args=body[0],
           exchange=exchange, routing_key=routing_key, traceparent=headers.get("traceparent"))


# -- the worker's main process ----------------------------------------------------------------


def received(sender=None, request=None, **kwargs):
    record("task_received", sender=type(sender).__name__, id=request.id, name=request.name,
           stamps=dict(request.stamps))


def rejected(sender=None, message=None, exc=None, **kwargs):
    record("task_rejected", sender=type(sender).__name__, id=(message.headers or {}).get("id"),
           exc=type(exc).__name__)


def unknown(sender=None, message=None, exc=None, name=None, id=None, **kwargs):
    record("task_unknown", sender=type(sender).__name__, id=id, name=name,
           exc=type(exc).__name__, message_id=message.headers.get("id"))


def revoked(sender=None, request=None, terminated=None, signum=None, expired=None, **kwargs):
    record("task_revoked", sender=_name(sender), id=request.id, args=list(request.args),
           terminated=terminated, signum=signum, expired=expired)


# -- the pool process -----------------------------------------------------------------------


def prerun(sender=None, task_id=None, task=None, args=None, kwargs=None, **rest):
    record("task_prerun", sender=_name(sender), id=task_id, task=_name(task),
           args=list(args), kwargs=kwargs, request_id=task.request.id)
    if sender is breaks_receiver:
        raise RuntimeError(RECEIVER_ERROR)


def postrun(sender=None, task_id=None, task=None, args=None, kwargs=None, retval=None,
            state=None, **rest):
    record("task_postrun", sender=_name(sender), id=task_id, args=list(args), state=state,
           retval=repr(retval))


def success(sender=None, result=None, **kwargs):
    record("task_success", sender=_name(sender), id=sender.request.id, result=result)


def failure(sender=None, task_id=None, exception=None, args=None, kwargs=None, traceback=None,
            einfo=None, **rest):
    record("task_failure", sender=_name(sender), id=task_id, exception=repr(exception),
           args=list(args), kwargs=kwargs, traceback=type(traceback).__name__,
           einfo=type(einfo).__name__, einfo_exception=einfo.type.__name__,
           einfo_traceback=einfo.traceback)


def retry(sender=None, request=None, reason=None, einfo=None, **kwargs):
    record("task_retry", sender=_name(sender), id=request.id, retries=request.retries,
           reason=type(reason).__name__, reason_exc=repr(getattr(reason, "exc", None)),
           einfo=type(einfo).__name__)


# -- workers, beat, logging ---------------------------------------------------------------------


def worker_init(sender=None, **kwargs):
    record("worker_init", sender=type(sender).__name__, pool=sender.pool.pids())


def worker_ready(sender=None, **kwargs):
    record("worker_ready", sender=type(sender).__name__)


def process_init(sender=None, **kwargs):
    record("worker_process_init", sender=sender)


def process_shutdown(sender=None, pid=None, exitcode=None, **kwargs):
    record("worker_process_shutdown", sender=sender, arg_pid=pid, exitcode=exitcode)


def worker_shutdown(sender=None, **kwargs):
    record("worker_shutdown", sender=type(sender).__name__)


def beat_init(sender=None, **kwargs):
    record("beat_init", sender=type(sender).__name__)


def beat_embedded_init(sender=None, **kwargs):
    record("beat_embedded_init", sender=type(sender).__name__)


def own_logging(sender=None, loglevel=None, logfile=None, format=None, colorize=None, **kwargs):
    logging.basicConfig(level=loglevel, stream=sys.stderr, format=OWN_FORMAT)
    record("setup_logging", loglevel=loglevel, logfile=logfile, format=format,
           colorize=colorize)


def after_logger(sender=None, logger=None, loglevel=None, logfile=None, format=None, **kwargs):
    record("after_setup_logger", logger=logger.name, loglevel=loglevel, logfile=logfile,
           format=format)


PUBLISHING = {signals.before_task_publish: before_publish,
              signals.after_task_publish: after_publish}
WORKER = {
    **PUBLISHING,
    signals.task_received: received, signals.task_rejected: rejected,
    signals.task_unknown: unknown, signals.task_revoked: revoked,
    signals.task_prerun: prerun, signals.task_postrun: postrun, signals.task_success: success,
    signals.task_failure: failure, signals.task_retry: retry,
    signals.worker_init: worker_init, signals.worker_ready: worker_ready,
    signals.worker_process_init: process_init,
    signals.worker_process_shutdown: process_shutdown,
    signals.worker_shutdown: worker_shutdown, signals.beat_init: beat_init,
    signals.beat_embedded_init: beat_embedded_init,
    signals.after_setup_logger: after_logger,
}


def connect(receivers: dict[signals.Signal, Any]) -> None:
    for signal, receiver in receivers.items():
        signal.connect(receiver)


def disconnect(receivers: dict[signals.Signal, Any]) -> None:
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


# -- tasks ------------------------------------------------------------------------------------


@app.task(bind=True)
def traced(self, value):
    """What a tracing integration reads on the worker: the trace header as an attribute."""
    return {"attribute": getattr(self.request, "traceparent", None),
            "header": self.request.headers.get("traceparent"), "value": value}


@app.task
def breaks_receiver(value):
    """Its ``task_prerun`` receiver raises; the task must run anyway."""
    return value


@app.task(bind=True)
def stamp_probe(self, value=None, kind="stamps", seconds=0.0, gate=None):
    """Record this task's stamps (``id|stamps|stamped_headers``); sleep, or wait for the
    test to open ``gate``; pass ``value`` on."""
    request = self.request
    push(kind, f"{request.id}|{json.dumps(request.stamps, sort_keys=True)}|"
               f"{json.dumps(sorted(request.stamped_headers))}")
    if seconds:
        time.sleep(seconds)
    if gate is not None:
        wait_for_gate(gate)
    return value


@app.task(bind=True)
def stamp_replacer(self, value, kind="stamps"):
    """Replace itself with two probes (the replacement must keep the stamps)."""
    self.replace(stamp_probe.s(value, kind=kind) | stamp_probe.s(kind=kind))


if os.environ.get("FLOWQ_TEST_SIGNALS"):
    connect(WORKER)
if os.environ.get("FLOWQ_TEST_OWN_LOGGING"):
    signals.setup_logging.connect(own_logging)
