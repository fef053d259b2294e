"""The current application: the one signatures use when they were made without one."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flowq.app import Flowq

_local = threading.local()
_default: list[Flowq] = []


def set_current_app(app: Flowq) -> None:
    """Make ``app`` the one used by bare signatures in this thread (and the default)."""
    _local.app = app
    if not _default:
        _default.append(app)
    else:
        _default[0] = app


def current_app() -> Flowq:
    """The app of this thread, else the last app created, else a default app."""
    app = getattr(_local, "app", None) or (_default[0] if _default else None)
    if app is None:
        from flowq.app import Flowq

        app = Flowq("default")
    return app
