"""Revoking by stamp (``app.control.revoke_by_stamped_headers``): kept and matched.

``{"run": "r1"}`` revokes every task stamped ``run="r1"``; ``{"run": ["r1", "r2"]}``
either value; several names revoke a task that matches any of them, as in Celery. A
task whose stamp is a list (``append_stamps``) matches when any of its values does.

Revocations by stamp are kept with the revoked ids in the result backend, one entry
``stamp:<JSON [name, value]>`` per value (``terminate:<signal>:stamp:...`` when running
ones are also killed), so they expire with them and reach workers started later.
Values are compared by their JSON text, so ``1`` and ``"1"`` are different stamps.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from flowq.canvas.options import check_stamp
from flowq.exceptions import ConfigurationError

MARK = "stamp:"


def _text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def normalized(headers: Mapping[str, Any]) -> dict[str, list[Any]]:
    """``{name: [values]}`` from Celery's ``{name: value or [values]}``; refuses names
    and values no stamp can have."""
    if not isinstance(headers, Mapping) or not headers:
        raise ConfigurationError(f"revoke_by_stamped_headers needs a dict of stamp names to "
                                 f"values, got {headers!r}")
    out: dict[str, list[Any]] = {}
    for name, value in headers.items():
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        for item in values:
            problem = check_stamp(name, item)
            if problem:
                raise ConfigurationError(f"revoke_by_stamped_headers: {problem}")
        out[name] = values
    return out


def entries(headers: Mapping[str, Any]) -> list[str]:
    """The backend entries that revoke ``headers``' stamps."""
    return [MARK + _text([name, value])
            for name, values in normalized(headers).items() for value in values]


@attrs.frozen(slots=True)
class RevokedStamps:
    """Stamp values revoked, by stamp name (as JSON text)."""

    values: Mapping[str, frozenset[str]] = attrs.field(factory=dict)

    @classmethod
    def of(cls, headers: Mapping[str, Any]) -> RevokedStamps:
        return cls.parse(entries(headers))

    @classmethod
    def parse(cls, found: Iterable[str]) -> RevokedStamps:
        """From backend entries (``stamp:...``); an entry that does not parse is skipped."""
        values: dict[str, set[str]] = {}
        for entry in found:
            try:
                name, value = json.loads(entry.removeprefix(MARK))
            except (ValueError, TypeError):
                continue
            if isinstance(name, str):
                values.setdefault(name, set()).add(_text(value))
        return cls({name: frozenset(v) for name, v in values.items()})

    def __bool__(self) -> bool:
        return bool(self.values)

    def union(self, other: RevokedStamps) -> RevokedStamps:
        names = set(self.values) | set(other.values)
        return RevokedStamps({name: self.values.get(name, frozenset())
                              | other.values.get(name, frozenset()) for name in names})

    def revokes(self, request: Any) -> bool:
        """Whether a request (anything with ``stamps``) carries a stamp revoked here."""
        return self.match(request.stamps) is not None

    def match(self, stamps: Mapping[str, Any]) -> dict[str, Any] | None:
        """``{name: value}`` of the first of ``stamps`` revoked here, or None."""
        for name, stamp in stamps.items():
            revoked = self.values.get(name)
            if not revoked:
                continue
            for value in stamp if isinstance(stamp, (list, tuple)) else (stamp,):
                if _text(value) in revoked:
                    return {name: value}
        return None
