"""docs/observability.md's sections on handles, progress, pictures, metrics and resume
are true: their Python snippets are the code of
examples/workflows/observability.py, which runs here against a real worker; what the page
shows the example printing, and the picture it shows, are that run's own output (task ids
aside, which are new each run); its commands parse; its metrics are the ones served."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flowq import Flowq
from flowq.cli import main
from flowq.runtime.worker import Worker
from tests.doc_sections import sections

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "observability.md"
EXAMPLE = ROOT / "examples" / "workflows" / "observability.py"
PICTURE = ROOT / "docs" / "images" / "workflow-failed.svg"
#: task ids, whole or cut to 8 characters (or to any length, ending with "…")
_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
                 r"|[-0-9a-f]*…)?")


#: The sections that show the example (the dashboard's are run by tests/dashboard).
SECTIONS = ("Workflow handles", "Progress", "Pictures", "Metrics", "Resume",
            "What handles, progress and resume cost")


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", sections(DOC, SECTIONS), flags=re.S)


def without_ids(text: str) -> str:
    return _ID.sub("<id>", text)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The example, run once as a user would: its output and the picture it drew."""
    where = tmp_path_factory.mktemp("observability")
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "examples.workflows.observability",
                           "picture.svg"], cwd=where, env=env, capture_output=True, text=True,
                          timeout=110, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, (where / "picture.svg").read_text()


def test_the_example_fails_then_resumes(run: tuple[str, str]) -> None:
    out, _ = run
    assert "failed: download 3: connection reset" in out
    assert "\n55\nSUCCESS TaskProgress(total=7, succeeded=7, failed=0, running=0)\n" in out
    assert out.rstrip().endswith("worker stopped (exit code 0)")


def test_the_page_shows_what_the_example_prints(run: tuple[str, str]) -> None:
    out, _ = run
    shown = [block for block in blocks("text") if block.startswith(("TaskProgress", "55\n"))]
    assert len(shown) == 2
    for block in shown:
        assert without_ids(block) in without_ids(out)


def test_the_picture_on_the_page_is_the_examples_own(run: tuple[str, str]) -> None:
    _, drawn = run
    assert "](images/workflow-failed.svg)" in DOC.read_text()
    assert without_ids(PICTURE.read_text()) == without_ids(drawn), (
        "docs/images/workflow-failed.svg is out of date: redraw it with python -m "
        "examples.workflows.observability docs/images/workflow-failed.svg")


def _stripped(text: str) -> list[str]:
    return [line.strip() for line in text.strip().splitlines()]


def test_every_python_snippet_is_the_examples_code() -> None:
    example = _stripped(EXAMPLE.read_text())
    snippets = blocks("python")
    assert len(snippets) >= 5
    for snippet in snippets:
        lines = _stripped(snippet)
        assert any(example[i:i + len(lines)] == lines for i in range(len(example))), snippet


def test_every_flowq_command_parses() -> None:
    commands = [line for block in blocks("sh") for line in block.splitlines()
                if line.startswith("flowq ")]
    assert len(commands) >= 6
    for line in commands:
        args = shlex.split(line)[1:]
        with main.make_context("flowq", list(args)) as ctx:
            rest = list(ctx.args)  # what follows the subcommand's name
            name = args[len(args) - len(rest) - 1]
            command = main.get_command(ctx, name)
            assert command is not None, line
            command.make_context(name, rest, parent=ctx)  # raises on a bad option


def test_the_scrape_configuration_is_yaml() -> None:
    (config,) = blocks("yaml")
    assert yaml.safe_load(config)["scrape_configs"][0]["static_configs"][0]["targets"]


def test_the_metrics_listed_are_the_ones_served() -> None:
    app = Flowq("doc-metrics", broker="memory://", backend="memory://doc-metrics",
                worker_metrics_port=9808)
    metrics = Worker(app, pool="solo").metrics
    assert metrics is not None
    served = set()
    for family in metrics.registry.collect():
        served.add(f"{family.name}_total" if family.type == "counter" else family.name)
    listed = set(re.findall(r"^\| `(flowq_\w+)`", sections(DOC, ["Metrics"]), flags=re.M))
    assert listed == served
