"""The ``python`` code blocks of one section of a page in ``docs/``, for tests that run them."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def section_snippets(page: str, heading: str) -> list[str]:
    """The ``python`` blocks under ``## <heading>`` of ``docs/<page>``, up to the next
    ``## `` heading; fails when the section or its code is missing."""
    text = (DOCS / page).read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end != -1 else len(text)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, f"docs/{page}: no python block under '## {heading}'"
    return blocks
