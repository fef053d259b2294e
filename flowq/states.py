"""Task states, with Celery's names and meaning."""

from __future__ import annotations

PENDING = "PENDING"  #: unknown to the backend: not yet run, or forgotten
RECEIVED = "RECEIVED"  #: a worker has the message
STARTED = "STARTED"  #: running (recorded only with task_track_started)
RETRY = "RETRY"  #: waiting to be retried
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
REVOKED = "REVOKED"  #: revoked or expired before it could finish
#: How a run ended when the task raised Ignore (or replaced itself) or Reject: the
#: ``state`` of ``task_postrun`` (as in Celery); never stored as a result.
IGNORED = "IGNORED"
REJECTED = "REJECTED"

#: States after which nothing changes.
READY_STATES = frozenset({SUCCESS, FAILURE, REVOKED})
UNREADY_STATES = frozenset({PENDING, RECEIVED, STARTED, RETRY})
#: Ready states that mean the task did not succeed.
EXCEPTION_STATES = frozenset({RETRY, FAILURE, REVOKED})
PROPAGATE_STATES = frozenset({FAILURE, REVOKED})
ALL_STATES = READY_STATES | UNREADY_STATES
