"""Every snippet of docs/migrating-from-celery.md runs, and does what the page says.

The page's blocks run in order in one namespace, as a reader would type them:

* ```` ```python ```` blocks are run as code (each under its own file name, so a warning
  names its line). One preceded by ``<!-- expect: warns X -->`` must give the warning
  ``X``; one preceded by ``<!-- expect: raises X -->`` must raise ``X``; any other must
  run without either.
* ```` ```pycon ```` blocks are doctests: what they show is what they print.
* ```` ```diff ```` blocks: the added lines (``+``) are run.

The ``pycon`` blocks of the Serializers section of docs/runtime.md run the same way.
"""

from __future__ import annotations

import builtins
import doctest
import linecache
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowq import _state, exceptions

DOCS = Path(__file__).resolve().parents[1] / "docs"
MIGRATING = DOCS / "migrating-from-celery.md"
BLOCK = re.compile(r"(?:<!-- expect: (?P<expect>\w+) (?P<what>\w+) -->\n)?"
                   r"^```(?P<lang>python|pycon|diff)\n(?P<code>.*?)^```", re.S | re.M)


@pytest.fixture
def restore_current_app() -> Iterator[None]:
    current = _state.current_app()
    yield
    _state.set_current_app(current)  # the pages make apps of their own


def _error(name: str) -> type[BaseException]:
    found = getattr(exceptions, name, None) or getattr(builtins, name, None)
    assert isinstance(found, type) and issubclass(found, BaseException), name
    return found


def _run(code: str, name: str, namespace: dict[str, object]) -> None:
    linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # for warnings
    exec(compile(code, name, "exec"), namespace)  # noqa: S102 - the docs' own code


def run_page(path: Path, text: str, section: tuple[int, int] | None = None) -> int:
    """Run the blocks of ``text`` (``section``: a slice of it); return how many ran."""
    namespace: dict[str, object] = {"__name__": "proj"}  # task names are proj.<function>
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS)
    report: list[str] = []
    start, end = section or (0, len(text))
    ran = 0
    for block in BLOCK.finditer(text, start, end):
        line = text.count("\n", 0, block.start("code")) + 1
        name = f"{path.name}:{line}"
        code, lang, expect, what = (block.group("code"), block.group("lang"),
                                    block.group("expect"), block.group("what"))
        ran += 1
        if lang == "pycon":
            test = parser.get_doctest(code, namespace, name, str(path), line - 1)
            runner.run(test, out=report.append, clear_globs=False)
            namespace = test.globs
            continue
        if lang == "diff":
            code = "".join(row[1:] + "\n" for row in code.splitlines() if row.startswith("+"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if expect == "raises":
                with pytest.raises(_error(what)):
                    _run(code, name, namespace)
            else:
                _run(code, name, namespace)
        flowq_warnings = [w for w in caught if issubclass(w.category, exceptions.FlowqWarning)]
        if expect == "warns":
            assert flowq_warnings and all(w.category is _error(what) for w in flowq_warnings), (
                f"{name}: expected {what}, got {[str(w.message) for w in caught]}")
            assert all(w.filename == name for w in flowq_warnings)  # at the reader's line
        else:
            assert not flowq_warnings, f"{name}: {[str(w.message) for w in flowq_warnings]}"
    assert runner.failures == 0, "".join(report)
    return ran


def test_every_snippet_of_the_migration_guide_runs_as_it_says(restore_current_app) -> None:
    text = MIGRATING.read_text()
    every_block = re.findall(r"^```\w", text, flags=re.M)
    assert run_page(MIGRATING, text) == len(every_block) >= 15  # none left unrun


def test_the_guide_has_the_sections_issue_11_asks_for() -> None:
    headings = re.findall(r"^## (.+)$", MIGRATING.read_text(), flags=re.M)
    assert headings[0] == "Change your imports"
    assert "Celery features flowq does not have" in headings
    for own in ("Signals", "Stamping"):  # filled by the work that adds them
        body = MIGRATING.read_text().split(f"\n## {own}\n", 1)[1].split("\n## ", 1)[0]
        assert body.strip() and "see below" not in body.lower()


def test_the_readme_links_the_guide() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    assert "(docs/migrating-from-celery.md)" in readme


def test_the_serializers_section_of_the_runtime_guide_runs(restore_current_app) -> None:
    page = DOCS / "runtime.md"
    text = page.read_text()
    start = text.index("\n## Serializers\n")
    end = text.index("\n## ", start + 1)
    assert run_page(page, text, (start, end)) == len(
        re.findall(r"^```\w", text[start:end], flags=re.M)) >= 1
