"""A loud warning where Celery code expects a signature to change in place.

In Celery ``sig.link(cb)``, ``sig.link_error(eb)``, ``sig.set(queue="q")``,
``sig.set_immutable(True)`` and ``sig.stamp(...)`` change ``sig``. flowq's signatures are
values: those calls return a new signature and leave ``sig`` as it was, so a Celery line
written as a statement (its result unused) silently does nothing. :func:`check` catches
exactly that case: the caller's next bytecode instruction after the call is ``POP_TOP``
(the value of an expression statement is dropped). ``sig = sig.link(cb)``, ``return sig.set(...)``,
``sig.set(queue="q").delay()`` and arguments to other calls all use the result and never
warn; neither does an interactive prompt, which prints the value.

The verdict is worked out once per call site (code object and instruction offset) and
cached, so a call costs one frame lookup and one dictionary lookup; the warning is given
once per site, naming its file and line and the line to write instead.
"""

from __future__ import annotations

import ast
import dis
import linecache
import os
import sys
import threading
import warnings
from types import CodeType

from flowq.exceptions import DiscardedSignatureWarning

#: What a thrown-away call of each method fails to do.
EFFECTS = {
    "link": "the callback is never attached",
    "link_error": "the errback is never attached",
    "on_error": "the errback is never attached",
    "set": "the options are never applied",
    "set_immutable": "the flag is never set",
    "stamp": "the stamps are never applied",
}

_FLOWQ = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
#: (id of the caller's code, offset) -> (that code, verdict). Keyed by id, as hashing a
#: code object hashes its bytecode; the code is kept so its id cannot be reused.
_verdicts: dict[tuple[int, int], tuple[CodeType, bool]] = {}
_warned: set[tuple[str, int]] = set()
_lock = threading.Lock()


def check(method: str) -> None:
    """Warn if the caller of the public method ``method`` (two frames up) throws its
    result away. Call it first thing in that method."""
    frame = sys._getframe(2)
    code = frame.f_code
    site = (id(code), frame.f_lasti)
    known = _verdicts.get(site)
    if known is None or known[0] is not code:
        known = _verdicts[site] = (code, _result_dropped(code, frame.f_lasti))
    if known[1]:
        _warn(method, code.co_filename, frame.f_lineno)


def _result_dropped(code: CodeType, offset: int) -> bool:
    """Whether the instruction after the call at ``offset`` drops the call's value.

    ``offset`` is the frame's ``f_lasti``: the call instruction, or (CPython 3.11) the
    last of the inline cache entries that follow it; either way the next instruction
    listed (caches are not) is the one that receives the value.
    """
    for instruction in dis.get_instructions(code):
        if instruction.offset > offset:
            return instruction.opname == "POP_TOP"
    return False


def _warn(method: str, filename: str, line: int | None) -> None:
    if os.path.abspath(filename).startswith(_FLOWQ) or line is None:
        return  # flowq's own code; or a frame without a line to point at
    with _lock:
        if (filename, line) in _warned:
            return
        _warned.add((filename, line))
    written = _call_at(filename, line, method)
    if written is None:
        return
    call, receiver = written
    warnings.warn_explicit(
        f"{filename}:{line}: `{call}` returns a new signature and leaves `{receiver}` "
        f"unchanged (flowq signatures are immutable values); this line throws the new one "
        f"away, so {EFFECTS[method]}. Write `{receiver} = {call}`",
        DiscardedSignatureWarning, filename, line)


def _call_at(filename: str, line: int, method: str) -> tuple[str, str] | None:
    """The call as written on ``line`` and its receiver (``sig`` in ``sig.link(cb)``);
    generic text when the source cannot be read or parsed; None when the receiver is not
    a variable, attribute or item (``add.s(1).set(...)`` changes nothing in Celery either)."""
    source = linecache.getline(filename, line).strip()
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a statement over several lines
        return f"sig.{method}(...)", "sig"
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == method):
            receiver = node.func.value
            if not isinstance(receiver, (ast.Name, ast.Attribute, ast.Subscript)):
                return None
            return ast.unparse(node), ast.unparse(receiver)
    return f"sig.{method}(...)", "sig"
