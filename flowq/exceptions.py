"""Every error flowq raises, under one root so ``except FlowqError`` catches them all.

::

    FlowqError
    ├── ConfigurationError            bad setting, unknown task option, bad app path
    │   └── MissingExtra              an optional dependency is not installed (ImportError too)
    ├── InvalidState                  update_state() given a terminal or empty state
    ├── NotRegistered                 task name unknown to this app (KeyError too)
    ├── TimeoutError                  result.get() waited too long (builtin TimeoutError too)
    ├── BrokerError
    │   ├── BrokerUnavailable         cannot connect/publish after bounded retries
    │   └── PublishRejected           broker nacked or could not route a message
    ├── BackendError
    │   ├── BackendUnavailable        result backend unreachable after retries
    │   └── ChordStateLost            a chord's counter expired or vanished mid-chord
    ├── ProtocolError                 a message that must not be executed
    │   ├── MalformedMessage          body/headers of the wrong shape
    │   ├── UnsupportedProtocol       missing or newer protocol version
    │   ├── ContentDisallowed         content type not in accept_content
    │   ├── MessageTooLarge           headers or body over the configured budget
    │   ├── InvalidSignature          message signing check failed
    │   └── MalformedCanvas           workflow header that does not decode
    ├── WorkflowError
    │   ├── InvalidWorkflow           a canvas that cannot run; names the node's path
    │   ├── WorkflowNotFound          no sent workflow is known for an id (LookupError too)
    │   ├── ResumeRefused             resume() of a workflow running, successful or revoked
    │   └── ImmutableSignature        assigning to a signature's attributes (AttributeError too)
    ├── EncodeError                   a value the serializer cannot carry (TypeError too)
    ├── TaskOutcome                   raised inside tasks to steer the worker
    │   ├── Retry, Reject, Ignore, Replace
    │   ├── SoftTimeLimitExceeded, TimeLimitExceeded
    │   └── WorkerLostError
    ├── TaskError                     how failures of other tasks surface
    │   ├── ChordError                a chord member failed (see ChordError.wrap)
    │   ├── TaskRevokedError          revoked or expired before it ran
    │   ├── MaxRetriesExceededError   retries exhausted; carries the last exception
    │   └── RemoteError               a task raised an exception we will not rebuild

Warnings (``UserWarning``)::

    FlowqWarning
    └── DiscardedSignatureWarning     sig.link(cb) as a statement: its new signature is lost
"""

from __future__ import annotations

import builtins
from typing import Any

from billiard import exceptions as _pool


class FlowqError(Exception):
    """Root of every flowq error."""


class ConfigurationError(FlowqError):
    """A setting, task option or application path is wrong."""


class MissingExtra(ConfigurationError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names
    the extra to install (``pip install 'flowq[png]'``)."""


class InvalidState(FlowqError, ValueError):
    """``update_state`` was asked to record a state it must not (terminal, or none)."""


class NotRegistered(FlowqError, KeyError):
    """A task name that this application does not know."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the sentence.
        return str(self.args[0]) if self.args else "task not registered"


class TimeoutError(FlowqError, builtins.TimeoutError):
    """Waiting for a result took longer than the timeout given."""


# -- broker and backend -------------------------------------------------------------------


class BrokerError(FlowqError):
    """The message broker failed."""


class BrokerUnavailable(BrokerError):
    """The broker could not be reached after the configured retries."""


class PublishRejected(BrokerError):
    """The broker refused a message (nack, or no queue to route it to)."""


class BackendError(FlowqError):
    """The result backend failed."""


class BackendUnavailable(BackendError):
    """The result backend could not be reached after the configured retries."""


class ChordStateLost(BackendError):
    """A chord's bookkeeping vanished (expired or deleted) before all its parts arrived."""


# -- protocol -----------------------------------------------------------------------------


class ProtocolError(FlowqError):
    """A message that must not be executed; it is dead-lettered with this as the reason."""


class MalformedMessage(ProtocolError):
    """A message body or header of the wrong shape."""


class UnsupportedProtocol(ProtocolError):
    """A message without a protocol version, or from a newer major version."""


class ContentDisallowed(ProtocolError):
    """A message whose content type is not in ``accept_content``."""


class MessageTooLarge(ProtocolError):
    """Message headers or body over the configured size budget."""


class InvalidSignature(ProtocolError):
    """A signed message whose signature does not verify."""


class MalformedCanvas(ProtocolError):
    """A workflow encoding that does not decode; the message names the field."""


# -- workflows ------------------------------------------------------------------------------


class WorkflowError(FlowqError):
    """A workflow that cannot be built or run."""


class InvalidWorkflow(WorkflowError, ValueError):
    """A canvas that fails validation; ``problems`` lists each node path and what is wrong."""

    def __init__(self, problems: list[tuple[str, str]] | str):
        if isinstance(problems, str):
            if problems.startswith("invalid workflow"):  # rebuilt from its own message
                self.problems = [("workflow", problems)]
                super().__init__(problems)
                return
            problems = [("workflow", problems)]
        self.problems = list(problems)
        lines = [f"{path}: {what}" for path, what in self.problems]
        head = "invalid workflow" if len(lines) == 1 else f"invalid workflow ({len(lines)} problems)"
        super().__init__(head + ": " + "; ".join(lines))


class WorkflowNotFound(WorkflowError, LookupError):
    """No sent workflow is stored for an id: a lone task, a workflow sent from inside a
    task, an unknown id, or one expired after ``result_expires``."""


class ResumeRefused(WorkflowError):
    """``resume()`` cannot run: the workflow is still running, fully successful, or
    revoked."""


class ImmutableSignature(WorkflowError, AttributeError):
    """An attribute of a signature was assigned (``sig.args = ...``): signatures are values.

    Also an ``AttributeError``, which is what assigning to a read-only attribute raises.
    """


class EncodeError(FlowqError, TypeError):
    """A task argument or result that the serializer cannot carry unchanged.

    The message names the task, where the value sits (``argument 1['items'][3]``, ``the
    return value``) and its type, and says what to do. Also a ``TypeError``, which is what
    ``json.dumps`` raises for such a value.
    """


# -- warnings ---------------------------------------------------------------------------------


class FlowqWarning(UserWarning):
    """Root of the warnings flowq gives."""


class DiscardedSignatureWarning(FlowqWarning):
    """A signature method that returns a new signature was called and its result thrown
    away: Celery code that expects ``sig.link(cb)`` to change ``sig`` in place."""


# -- outcomes raised inside tasks -------------------------------------------------------------


class TaskOutcome(FlowqError):
    """Raised inside a task to tell the worker what to do with it."""


class Retry(TaskOutcome):
    """The task asked to be retried (``self.retry()`` raises this).

    ``when`` is the countdown in seconds, or ``eta`` an absolute time; ``args``,
    ``kwargs`` and ``options`` replace the original call's when given.
    """

    def __init__(self, message: str | None = None, exc: BaseException | None = None,
                 when: float | None = None, eta: Any = None,
                 args: tuple[Any, ...] | None = None, kwargs: dict[str, Any] | None = None,
                 options: dict[str, Any] | None = None):
        self.exc = exc
        self.when = when
        self.eta = eta
        self.retry_args = args
        self.retry_kwargs = kwargs
        self.options = options or {}
        super().__init__(message or f"Retry in {when}s" + (f": {exc!r}" if exc else ""))


class Reject(TaskOutcome):
    """Reject the message: dead-letter it, or requeue it when ``requeue=True``."""

    def __init__(self, reason: Any = None, requeue: bool = False):
        self.reason = reason
        self.requeue = requeue
        super().__init__(f"rejected: {reason}" if reason is not None else "rejected")


class Ignore(TaskOutcome):
    """Ack the message and record nothing; the task's state stays as it was."""


class Replace(TaskOutcome):
    """The task replaced itself with another workflow (``self.replace(sig)`` raises this)."""

    def __init__(self, replacement: Any):
        self.replacement = replacement
        super().__init__(f"replaced by {replacement!r}")


class SoftTimeLimitExceeded(TaskOutcome, _pool.SoftTimeLimitExceeded):
    """Raised inside a task when its soft time limit passes; the task may clean up.

    Also an instance of billiard's class, so code written for Celery catches it too.
    """


class TimeLimitExceeded(TaskOutcome, _pool.TimeLimitExceeded):
    """A task ran past its hard time limit; its process was killed and replaced."""


class WorkerLostError(TaskOutcome, _pool.WorkerLostError):
    """The process running a task died (killed, ``os._exit``, ``SystemExit``)."""


# -- how failures of other tasks surface ------------------------------------------------------


class TaskError(FlowqError):
    """A task failed in a way flowq itself describes."""


class TaskRevokedError(TaskError):
    """The task was revoked (or expired) before it could run."""


class MaxRetriesExceededError(TaskError):
    """A task used up its retries; ``exc`` is the last exception it raised."""

    def __init__(self, message: str, exc: BaseException | None = None):
        self.exc = exc
        super().__init__(message)


class RemoteError(TaskError):
    """A task raised an exception whose type is not rebuilt here (not importable or unsafe)."""

    def __init__(self, exc_type: str, message: str):
        self.exc_type = exc_type
        self.exc_message = message
        super().__init__(f"{exc_type}: {message}")


def _message_init(self: BaseException, message: str) -> None:
    BaseException.__init__(self, message)


def _message_str(self: BaseException) -> str:
    return str(self.args[0]) if self.args else ""


class ChordError(TaskError):
    """A chord member failed, so the chord body never ran.

    ``ChordError.wrap(original, ...)`` returns an error that is both a ``ChordError`` and
    an instance of the original exception's type, so ``except ValueError`` and
    ``except ChordError`` both catch a chord that failed with a ``ValueError``.
    """

    failed_task_id: str | None = None
    failed_task: str | None = None

    @classmethod
    def wrap(cls, original: BaseException, task_name: str | None,
             task_id: str | None) -> ChordError:
        where = f"chord member {task_name or '?'}[{task_id or '?'}] failed"
        message = f"{original} ({where})" if str(original) else where
        base = type(original)
        error: ChordError
        if isinstance(original, ChordError) or not issubclass(base, Exception):
            error = cls(message)
        else:
            try:
                # The original type's __init__ and __str__ may need arguments we do not
                # have; the mixed class keeps only the message.
                mixed = type(f"ChordError[{base.__name__}]", (cls, base),
                             {"__init__": _message_init, "__str__": _message_str})
                error = mixed(message)
            except TypeError:  # base has an incompatible instance layout
                error = cls(message)
        error.failed_task = task_name
        error.failed_task_id = task_id
        return error
