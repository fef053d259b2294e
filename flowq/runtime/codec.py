"""Encoding of stored results and exceptions, and the safe way back.

A stored payload is one tag byte naming the serializer, then the serialized document
``{"result": ...}`` or ``{"exc": {...}, "traceback": "..."}`` plus ``"children"``.
Reading checks the tag against the accepted content types *before* deserializing.

Exceptions are rebuilt only from classes already imported (looked up in
``sys.modules``, never imported by name) that subclass ``Exception``; anything else
becomes :class:`~flowq.exceptions.RemoteError`. A poisoned record naming ``os.system``
therefore yields a ``RemoteError``, not a call.
"""

from __future__ import annotations

import sys
import traceback as tb
from collections.abc import Collection, Sequence
from typing import Any

from kombu.exceptions import EncodeError as KombuEncodeError
from kombu.serialization import dumps as kombu_dumps
from kombu.serialization import loads as kombu_loads
from kombu.serialization import registry

from flowq.canvas.encodable import arguments_error, encode_error
from flowq.exceptions import ChordError, ContentDisallowed, MalformedMessage, RemoteError

_TAGS = {"json": b"j", "msgpack": b"m", "yaml": b"y", "pickle": b"p"}
_NAMES = {tag: name for name, tag in _TAGS.items()}


def content_type_of(serializer: str) -> str:
    """The MIME type kombu uses for ``serializer`` (``json`` -> ``application/json``)."""
    try:
        return registry._encoders[serializer].content_type  # type: ignore[no-any-return]
    except KeyError:
        raise ContentDisallowed(f"unknown serializer {serializer!r}") from None


def serialize(document: Any, serializer: str, owner: str, place: str,
              value: Any = None) -> tuple[str, str, bytes | str]:
    """``kombu.serialization.dumps(document)``, or an EncodeError naming ``owner``, the
    ``place`` of ``value`` (the part of ``document`` that may not encode; the document
    itself by default) and the offending piece inside it."""
    try:
        return kombu_dumps(document, serializer=serializer)  # type: ignore[no-any-return]
    except KombuEncodeError:
        subject = document if value is None else value
        raise encode_error(owner, place, subject, serializer,
                           lambda piece: _carries(piece, serializer)) from None


def serialize_call(args: Any, kwargs: Any, serializer: str,
                   owner: str) -> tuple[str, str, bytes | str]:
    """A task message body ``[args, kwargs]``, or an EncodeError naming ``owner`` and the
    argument (by position or keyword) the serializer cannot carry."""
    try:
        return kombu_dumps([args, kwargs], serializer=serializer)  # type: ignore[no-any-return]
    except KombuEncodeError:
        raise arguments_error(owner, args, kwargs, serializer,
                              lambda piece: _carries(piece, serializer)) from None


def _carries(piece: Any, serializer: str) -> bool:
    try:
        kombu_dumps(piece, serializer=serializer)
    except KombuEncodeError:
        return False
    return True


def accepted_types(accept: Collection[str]) -> set[str]:
    """Content types for names in ``accept_content`` (names or MIME types)."""
    return {content_type_of(a) if "/" not in a else a for a in accept}


class ResultCodec:
    """Turns values and exceptions into backend payloads and back."""

    def __init__(self, serializer: str = "json", accept: Collection[str] = ("json",)):
        if serializer not in _TAGS:
            raise ContentDisallowed(f"result serializer {serializer!r} is not supported; "
                                    f"use one of {sorted(_TAGS)}")
        self.serializer = serializer
        self.tag = _TAGS[serializer]
        self.accept = accepted_types(accept)

    def _dump(self, document: Any, owner: str = "a result", value: Any = None) -> bytes:
        _, _, data = serialize(document, self.serializer, owner, "the return value", value)
        return self.tag + (data if isinstance(data, bytes) else data.encode())

    def _load(self, payload: bytes) -> Any:
        name = _NAMES.get(payload[:1])
        if name is None:
            raise MalformedMessage(f"stored result has an unknown format tag {payload[:1]!r}")
        content_type = content_type_of(name)
        if content_type not in self.accept:
            raise ContentDisallowed(f"stored result is {name}, which is not in the accepted "
                                    f"content ({sorted(self.accept)})")
        _, _, encoding = _codec_info(name)
        return kombu_loads(payload[1:], content_type, encoding, accept=self.accept)

    # values (chord parts carry bare values) -----------------------------------------------

    def dump_value(self, value: Any, owner: str = "a result") -> bytes:
        return self._dump(value, owner)

    def load_value(self, payload: bytes) -> Any:
        return self._load(payload)

    # result documents ---------------------------------------------------------------------

    def success(self, value: Any, children: Sequence[str] = (), owner: str = "a result") -> bytes:
        """The document of a successful result; EncodeError (naming ``owner``) when the
        serializer cannot carry ``value``."""
        doc: dict[str, Any] = {"result": value}
        if children:
            doc["children"] = list(children)
        return self._dump(doc, owner, value)

    def failure(self, exc: BaseException, traceback: str | None = None,
                children: Sequence[str] = ()) -> bytes:
        doc: dict[str, Any] = {"exc": exception_to_dict(exc), "traceback": traceback}
        if children:
            doc["children"] = list(children)
        return self._dump(doc)

    def load(self, payload: bytes) -> dict[str, Any]:
        """The stored document: ``result`` or ``exc`` (a dict), ``traceback``, ``children``."""
        doc = self._load(payload)
        if not isinstance(doc, dict):
            raise MalformedMessage("stored result is not a document")
        return doc


def _codec_info(name: str) -> tuple[str, str, str]:
    encoder = registry._encoders[name]
    return name, encoder.content_type, encoder.content_encoding


def format_traceback(exc: BaseException) -> str:
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))


def exception_to_dict(exc: BaseException) -> dict[str, Any]:
    """A JSON-safe description of ``exc`` from which :func:`exception_from_dict` rebuilds it."""
    cls = type(exc)
    if isinstance(exc, ChordError):
        original = next((b for b in cls.__mro__[1:] if b not in ChordError.__mro__
                         and issubclass(b, Exception)), None)
        doc: dict[str, Any] = {"type": "ChordError", "module": "flowq.exceptions",
               "message": str(exc),
               "task": exc.failed_task, "task_id": exc.failed_task_id}
        if original is not None:
            doc["wraps"] = {"type": original.__qualname__, "module": original.__module__}
        return doc
    doc = {"type": cls.__qualname__, "module": cls.__module__, "message": _text(exc, str),
           "args": _safe_args(exc.args)}
    cause = getattr(exc, "exc", None)  # MaxRetriesExceededError's last exception
    if isinstance(cause, BaseException) and cause is not exc:
        doc["cause"] = exception_to_dict(cause)
    return doc


def _safe_args(args: tuple[Any, ...]) -> list[Any]:
    return [a if isinstance(a, (str, int, float, bool, type(None))) else _text(a, repr)
            for a in args]


def _text(value: Any, show: Any) -> str:
    """``str``/``repr`` of a value from user code, which may itself raise: an exception
    whose ``__str__`` is broken must still be recorded, not lose the task's outcome."""
    try:
        return str(show(value))
    except Exception:  # noqa: BLE001 - anything: the text is for people
        return f"<{type(value).__name__} that cannot be shown>"


def _known_exception_class(module: Any, name: Any) -> type[Exception] | None:
    """The class ``module.name`` if it is already imported and an Exception subclass."""
    if not isinstance(module, str) or not isinstance(name, str) or not name.isidentifier():
        return None
    namespace = sys.modules.get(module)
    if namespace is None:
        return None
    # vars(), not getattr(): a module-level __getattr__ could import or run code.
    cls = vars(namespace).get(name)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls
    return None


def exception_from_dict(doc: Any) -> Exception:
    """Rebuild an exception described by :func:`exception_to_dict`, or a RemoteError."""
    if not isinstance(doc, dict):
        return RemoteError("unknown", repr(doc)[:200])
    name, module = doc.get("type"), doc.get("module")
    message = str(doc.get("message", ""))
    if name == "ChordError" and module == "flowq.exceptions":
        wraps = doc.get("wraps") or {}
        base = _known_exception_class(wraps.get("module"), wraps.get("type"))
        chord_error = ChordError.wrap(_instance(base, [message]) if base else Exception(message),
                                      doc.get("task"), doc.get("task_id"))
        chord_error.args = (message,)
        return chord_error
    cls = _known_exception_class(module, name)
    if cls is None:
        return RemoteError(f"{module}.{name}", message)
    args = doc.get("args")
    error = _instance(cls, args if isinstance(args, list) else [message])
    if isinstance(doc.get("cause"), dict) and hasattr(error, "exc"):
        error.exc = exception_from_dict(doc["cause"])
    return error


def _instance(cls: type[Exception], args: list[Any]) -> Exception:
    try:
        return cls(*args)
    except Exception:  # a constructor with other needs: keep the text at least
        try:
            error = cls.__new__(cls)
            error.args = tuple(args)
            return error
        except Exception:
            return RemoteError(f"{cls.__module__}.{cls.__qualname__}", " ".join(map(str, args)))
