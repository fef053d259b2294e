"""Every ``pycon`` example in docs/canvas.md runs and shows what it really returns."""

from __future__ import annotations

import doctest
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowq import _state

from . import tasks

DOC = Path(__file__).resolve().parents[2] / "docs" / "canvas.md"
BLOCK = re.compile(r"^```pycon\n(.*?)^```", re.DOTALL | re.MULTILINE)


@pytest.fixture
def restore_current_app() -> Iterator[None]:
    yield
    _state.set_current_app(tasks.app)  # the guide makes its own app the current one


def test_the_canvas_guide_examples(restore_current_app: None) -> None:
    text = DOC.read_text()
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    globs = {"__name__": "tasks"}  # task names in the guide are tasks.<function>
    blocks = list(BLOCK.finditer(text))
    assert len(blocks) >= 10
    for block in blocks:  # in order, sharing one namespace, as a reader would type them
        line = text.count("\n", 0, block.start(1))
        name = f"docs/canvas.md:{line + 1}"  # one name per block: tracebacks look code up by it
        test = parser.get_doctest(block.group(1), globs, name, str(DOC), line)
        runner.run(test, out=report.append, clear_globs=False)
        globs = test.globs  # DocTest copies the namespace it is given
    assert runner.failures == 0, "".join(report)
