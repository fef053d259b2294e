"""The README's snippets and every example program, run for real.

The README's ``tasks.py`` and client snippets are written to a temporary directory, a
worker is started with the README's own command, and the client's printed results are
checked. Every module in ``examples/workflows/`` runs as a script the same way.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: tests/test_observability_doc.py runs ``observability`` (and checks what it draws)
EXAMPLES = sorted(p.stem for p in (ROOT / "examples" / "workflows").glob("*.py")
                  if p.stem not in ("__init__", "observability"))

pytestmark = pytest.mark.timeout(120)


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def clean_env(tmp: Path, data_dir: bool = False) -> dict[str, str]:
    """The environment with no flowq URLs; with ``data_dir``, the embedded default's files
    go to ``tmp`` (an example's own default is beside it, inside the repository)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND", "FLOWQ_DATA_DIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(tmp)])
    if data_dir:
        env["FLOWQ_DATA_DIR"] = str(tmp / ".flowq")
    return env


def test_readme_opens_with_the_two_commands():
    first, second = blocks("sh")[:2]
    assert first.strip() == "pip install -e . && python -m examples.workflows.quickstart"
    assert second.strip() == "pip install -e '.[test]' && python -m pytest -q"


def test_readme_snippets_run_against_a_real_worker(tmp_path):
    tasks_source, client_source = blocks("python")[:2]
    (tmp_path / "tasks.py").write_text(tasks_source)
    (tmp_path / "client.py").write_text(client_source)
    worker_command = next(b for b in blocks("sh") if "worker" in b).strip()
    env = clean_env(tmp_path)
    args = shlex.split(worker_command)
    worker = subprocess.Popen([sys.executable, "-m", "flowq", *args[1:]], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        client = subprocess.run([sys.executable, "client.py"], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=90)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)
    assert client.returncode == 0, client.stderr
    lines = client.stdout.splitlines()
    assert lines[:4] == ["4", "[0, 2, 4, 6, 8]", "90", "112"]
    assert any("join[2]" in line for line in lines[4:])
    assert worker.returncode == 0


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs(name, tmp_path):
    result = subprocess.run([sys.executable, "-m", f"examples.workflows.{name}"],
                            cwd=tmp_path, env=clean_env(tmp_path, data_dir=True),
                            capture_output=True, text=True, timeout=110)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip()


def test_quickstart_prints_results_and_graph(tmp_path):
    result = subprocess.run([sys.executable, "-m", "examples.workflows.quickstart"],
                            cwd=tmp_path, env=clean_env(tmp_path, data_dir=True),
                            capture_output=True, text=True, timeout=110)
    assert "chain: the result is 4" in result.stdout
    assert "chord: 90" in result.stdout
    assert "join[10]" in result.stdout
    assert "worker stopped (exit code 0)" in result.stdout
