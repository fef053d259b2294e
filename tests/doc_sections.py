"""The text of chosen ``## `` sections of a page in ``docs/``, for tests that check what
those sections show (a page can mix sections that different tests run)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


def sections(page: Path, headings: Iterable[str]) -> str:
    """The ``## <heading>`` sections of ``page`` (each up to the next ``## ``), joined;
    fails when one is missing."""
    text = page.read_text()
    found = []
    for heading in headings:
        start = text.index(f"\n## {heading}\n")
        end = text.find("\n## ", start + 1)
        found.append(text[start:end if end != -1 else len(text)])
    return "".join(found)
