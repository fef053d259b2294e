"""Types that check: mypy over flowq itself, and over a user's module after the README's
install.

The second test builds a fresh virtual environment that sees this interpreter's packages
(mypy, kombu, ...) but not flowq, checks that mypy cannot find flowq there, installs the
project the README's way (``pip install -e .``, with ``--no-deps`` since the dependencies
are visible already), and runs ``mypy --strict`` on ``tests/typecheck/user_code.py`` copied
outside the repository. Every ``# E:`` / ``# N:`` comment in that file is an error / a
revealed type mypy must report on its line, and nothing else may be reported. The
example of docs/tasks.md's "Types" section is checked in the same run (it must pass) and
run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "typecheck" / "user_code.py"
DOC = ROOT / "docs" / "tasks.md"
EXPECTED = re.compile(r"#\s*([EN]): (.*)$")
REPORTED = re.compile(r"^user_code\.py:(\d+): (error|note): (.*)$")


@pytest.mark.timeout(300)
def test_mypy_finds_no_errors():
    result = subprocess.run([sys.executable, "-m", "mypy", "flowq"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def expected_messages() -> set[tuple[int, str, str]]:
    """(line, 'error' or 'note', message) from the sample's comments."""
    found = set()
    for number, line in enumerate(SAMPLE.read_text().splitlines(), start=1):
        match = EXPECTED.search(line)
        if match:
            found.add((number, "error" if match[1] == "E" else "note", match[2].strip()))
    return found


def reported_messages(output: str) -> set[tuple[int, str, str]]:
    """mypy's errors and revealed types (other notes, e.g. "defined here", are hints)."""
    found = set()
    for line in output.splitlines():
        match = REPORTED.match(line)
        if match and (match[2] == "error" or match[3].startswith("Revealed type")):
            found.add((int(match[1]), match[2], match[3]))
    return found


def fresh_environment(where: Path) -> Path:
    """A venv without flowq whose interpreter also sees this one's installed packages
    (a plain path line, so the editable install of flowq made there is not followed)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    target = subprocess.run([str(python), "-c", "import sysconfig; "
                             "print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(target, "outer-packages.pth").write_text("\n".join(sorted(ours)) + "\n")
    return python


def docs_example() -> str:
    """The Python block of docs/tasks.md's "Types" section."""
    section = DOC.read_text().split("## Types\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return block


def mypy(python: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--config-file",
                           "mypy.ini", "--cache-dir", str(cwd / ".mypy_cache"),
                           "--python-executable", str(python), "user_code.py", "docs_types.py"],
                          cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.mark.timeout(300)
def test_a_user_module_type_checks_after_the_readmes_install(tmp_path: Path):
    python = fresh_environment(tmp_path / "venv")
    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(SAMPLE, user / "user_code.py")
    (user / "docs_types.py").write_text(docs_example())
    (user / "mypy.ini").write_text("[mypy]\n")

    # Given an environment where flowq is not installed, mypy cannot find it
    before = mypy(python, user)
    assert 'Cannot find implementation or library stub for module named "flowq"' in (
        before.stdout), before.stdout + before.stderr

    # When the project is installed as the README says (pip install -e .)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install",
                              "--quiet", "--no-deps", "-e", "."], cwd=ROOT,
                             capture_output=True, text=True, timeout=240)
    assert install.returncode == 0, install.stdout + install.stderr

    # Then mypy sees flowq and reports exactly the expected errors and types
    after = mypy(python, user)
    reported = reported_messages(after.stdout)
    expected = expected_messages()
    assert len(expected) >= 18
    assert reported - expected == set(), after.stdout  # nothing unexpected
    assert expected - reported == set(), after.stdout  # nothing missed
    assert after.returncode == 1  # errors were found (the sample's deliberate ones)
    assert "docs_types.py:" not in after.stdout  # the documented example passes


def test_the_documented_example_runs(tmp_path: Path):
    (tmp_path / "docs_types.py").write_text(docs_example())
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND")}
    env.update(FLOWQ_DATA_DIR=str(tmp_path / "data"), PYTHONPATH=str(ROOT))
    run = subprocess.run([sys.executable, "docs_types.py"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr


def test_the_typed_call_options_are_the_ones_flowq_checks():
    """``CallOptions`` (what a type checker accepts in ``apply_async``) lists exactly the
    options validation knows, so neither can grow without the other."""
    from flowq.canvas.options import OPTIONS, CallOptions

    assert set(CallOptions.__annotations__) == set(OPTIONS)
    assert CallOptions.__optional_keys__ == frozenset(OPTIONS)
