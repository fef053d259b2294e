"""Every command and Python snippet of docs/observability.md's workflow and dashboard
sections runs, against a real worker (``tasks:app`` stands for the tests' app).

``flowq ... dashboard`` commands are started on a free port (the snippets' 5555 is
replaced by it), asked for ``/api/config`` with the credentials they require, and stopped;
the Python snippets run against the first one. ``pip`` lines are not run.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from flowq import chord
from tests.dashboard.conftest import free_port
from tests.doc_sections import sections
from tests.integration.app import add, tsum
from tests.integration.harness import ROOT, Cluster

pytestmark = pytest.mark.timeout(120)

DOC = ROOT / "docs" / "observability.md"
BLOCK = re.compile(r"^```(sh|python)\n(.*?)^```", re.DOTALL | re.MULTILINE)
APP = "tests.integration.app:app"


#: The sections these tests run (the others are tests/test_observability_doc.py's).
SECTIONS = ("Recent workflows", "Stuck workflows", "The dashboard")


def snippets(language: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(sections(DOC, SECTIONS)) if kind == language]


def commands() -> list[tuple[dict[str, str], list[str]]]:
    """``(environment, argv)`` of each shell line, ``-A tasks:app`` made the tests' app."""
    found = []
    for block in snippets("sh"):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if not words or words[0] == "pip":
                continue
            env = dict(word.split("=", 1) for word in words if "=" in word.split("-")[0])
            argv = [APP if word == "tasks:app" else word for word in words
                    if "=" not in word.split("-")[0]]
            assert argv[0] == "flowq", line
            found.append((env, [sys.executable, "-m", "flowq", *argv[1:]]))
    return found


def credentials(env: dict[str, str], argv: list[str]) -> dict[str, str]:
    if "FLOWQ_DASHBOARD_TOKEN" in env:
        return {"Authorization": f"Bearer {env['FLOWQ_DASHBOARD_TOKEN']}"}
    if "--basic-auth" in argv:
        pair = argv[argv.index("--basic-auth") + 1].encode()
        return {"Authorization": "Basic " + base64.b64encode(pair).decode()}
    return {}


def serve(cluster: Cluster, env: dict[str, str], argv: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if "--port" in argv:
        argv[argv.index("--port") + 1] = str(port)
    else:
        argv += ["--port", str(port)]
    proc = subprocess.Popen(argv, cwd=ROOT, env={**cluster.env, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/api/config", timeout=1,
                                 headers=credentials(env, argv))
            assert response.status_code == 200, response.text
            return proc, port
        except httpx.TransportError:
            assert time.monotonic() < deadline, f"{argv} does not answer"
            time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(10)


def test_the_observability_guide_commands_and_snippets(cluster: Cluster, tmp_path: Path) -> None:
    assert chord([add.s(i, i) for i in range(3)], tsum.s()).delay().get(timeout=20) == 6
    found = commands()
    assert len(found) >= 7 and snippets("python")
    python_ran = False
    for env, argv in found:
        if "dashboard" not in argv:
            done = subprocess.run(argv, cwd=ROOT, env={**cluster.env, **env}, check=False,
                                  capture_output=True, text=True, timeout=60)
            allowed = (0, 1) if "--stuck" in argv else (0,)
            assert done.returncode in allowed, (argv, done.stdout, done.stderr)
            continue
        proc, port = serve(cluster, env, argv)
        try:
            if not python_ran and not credentials(env, argv):
                for snippet in snippets("python"):
                    script = tmp_path / "snippet.py"
                    script.write_text(snippet.replace("5555", str(port)))
                    ran = subprocess.run([sys.executable, str(script)], check=False,
                                         capture_output=True, text=True, timeout=30)
                    assert ran.returncode == 0, ran.stderr
                    assert "SUCCESS 5/5" in ran.stdout  # the chord: 3 parts, join, body
                python_ran = True
        finally:
            stop(proc)
    assert python_ran
