"""docs/integrations.md is true: every Python example is a file of a project the tests
run (the Django and FastAPI projects beside this file, or the pytest example, run here
with pytester); every command line (shell, systemd's ExecStart, the Dockerfile's CMD)
is one ``flowq`` accepts. The unit files are parsed as INI, since systemd cannot run here.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest

from flowq.cli import main

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "integrations.md"
OPERATIONS = ROOT / "docs" / "operations.md"
PROJECTS = [Path(__file__).resolve().parent / name
            for name in ("django_project", "fastapi_project")]
PYTEST_EXAMPLE = ("myproj/tasks.py", "conftest.py", "test_tasks.py")


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)


def python_examples() -> dict[str, str]:
    """Each Python block's file name (its first line, ``# path``) and its code."""
    examples = {}
    for block in blocks(DOC, "python"):
        header, _, body = block.partition("\n")
        assert header.startswith("# ") and header.endswith(".py"), (
            f"a Python example must start with '# <file>.py': {header!r}")
        examples[header[2:]] = body
    return examples


def flowq_command(argv: list[str]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """Parse ``flowq ...`` as the CLI would, without running it: the subcommand, the
    group's and the subcommand's parameters. A bad option raises click's UsageError."""
    assert Path(argv[0]).name == "flowq", argv
    args = argv[1:]
    with main.make_context("flowq", list(args)) as ctx:
        rest = list(ctx.args)
        name = args[len(args) - len(rest) - 1]
        command = main.get_command(ctx, name)
        assert command is not None, name
        with command.make_context(name, rest, parent=ctx) as sub:
            return name, dict(ctx.params), dict(sub.params)


def systemd_words(value: str, instance: str = "w1") -> list[str]:
    """A unit's command line as systemd passes it: lines joined, ``%i`` the instance
    name, ``%%`` a literal ``%``."""
    line = value.replace("\\\n", " ")
    line = line.replace("%%", "\0").replace("%i", instance)
    assert "%" not in line, f"a systemd specifier this test does not know: {line}"
    return shlex.split(line.replace("\0", "%"))


def units(path: Path) -> list[configparser.ConfigParser]:
    parsed = []
    for block in blocks(path, "ini"):
        # strict=False: systemd allows a key more than once (Environment=)
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep case
        unit.read_string(re.sub(r"\\\n\s*", " ", block))
        parsed.append(unit)
    return parsed


def test_every_python_example_is_code_the_tests_run():
    examples = python_examples()
    assert set(PYTEST_EXAMPLE) <= set(examples)
    for name, code in examples.items():
        if name in PYTEST_EXAMPLE:
            continue
        homes = [project / name for project in PROJECTS if (project / name).exists()]
        assert len(homes) == 1, f"{name}: no file of a tested project"
        assert code in homes[0].read_text(), f"{name} differs from {homes[0]}"


def test_the_pytest_example_passes(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    for name in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND", "FLOWQ_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    examples = python_examples()
    pytester.mkpydir("myproj")
    for name in PYTEST_EXAMPLE:
        pytester.path.joinpath(name).write_text(examples[name])
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_the_shell_commands_are_ones_flowq_accepts():
    (command,) = [b.strip() for b in blocks(DOC, "sh")]
    name, group, options = flowq_command(shlex.split(command))
    assert (name, group["app_path"], options["concurrency"]) == ("worker", "proj", 4)


def test_the_unit_files_parse_and_their_commands_are_ones_flowq_accepts():
    found = {}
    for doc in (DOC, OPERATIONS):
        for unit in units(doc):
            service = unit["Service"]
            assert service["KillSignal"] == "SIGTERM"  # a warm shutdown
            assert unit["Install"]["WantedBy"] == "multi-user.target"
            name, group, options = flowq_command(systemd_words(service["ExecStart"]))
            found[(doc.name, name)] = options
            assert group["app_path"] == "tasks:app"
    worker = found[("integrations.md", "worker")]
    assert (worker["hostname"], worker["log_format"]) == ("w1@%h", "json")
    assert found[("operations.md", "worker")]["logfile"] == "/var/log/flowq/w1-%i.log"
    assert ("operations.md", "beat") in found


def test_a_bad_option_in_a_command_line_would_be_caught():
    with pytest.raises(click.UsageError):
        flowq_command(["flowq", "-A", "tasks:app", "worker", "--log-format", "xml"])
    with pytest.raises(click.UsageError):
        flowq_command(["flowq", "-A", "tasks:app", "worker", "--concurency", "2"])


def test_the_dockerfile_runs_a_worker_in_exec_form():
    (dockerfile,) = blocks(DOC, "dockerfile")
    instructions = dict(line.split(" ", 1) for line in dockerfile.splitlines()
                        if line and not line.startswith("#"))
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    command = json.loads(instructions["CMD"])  # exec form: the worker gets the signal
    name, group, options = flowq_command(command)
    assert (name, group["app_path"], options["log_format"]) == ("worker", "tasks:app", "json")
