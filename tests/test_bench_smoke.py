"""The bench harness runs: ``python -m bench --list`` and one tiny bench print JSON lines.

Timings are never asserted here (performance is measured in ``bench/``, not tested);
only that the commands exit 0 and every line on stdout is a JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.harness import require_server

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.timeout(120)


def run_bench(*args: str) -> list[dict]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run([sys.executable, "-m", "bench", *args], check=False, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines and all(isinstance(line, dict) for line in lines), done.stdout
    return lines


def test_list_names_every_bench_of_the_suite():
    names = {line["bench"] for line in run_bench("--list")}
    assert {"bytes", "latency", "throughput", "chain", "chord", "redis_commands",
            "embedded", "sqlite_transport"} <= names


def test_a_tiny_latency_bench_prints_json_lines():
    require_server("Redis", 6379)
    (line,) = run_bench("latency", "--quick", "--calls", "3", "--warmup", "1")
    assert line["bench"] == "latency"


def test_a_tiny_comparison_prints_a_line_per_run_and_a_summary():
    require_server("Redis", 6379)
    lines = run_bench("compare", "--systems", "flowq", "--rounds", "1", "--scale", "0.002",
                      "--no-scaling")
    runs = [line for line in lines if line["case"] != "summary"]
    assert {line["row"] for line in runs} == {
        "producer", "latency", "chain", "group", "chord", "chord_large", "drain", "rss"}
    assert all(line["ok"] and line["system"] == "flowq" for line in runs), runs
    (summary,) = [line for line in lines if line["case"] == "summary"]
    assert set(summary["table"]) == {line["row"] for line in runs}


def test_comparing_with_celery_absent_names_the_extra_to_install():
    try:
        import celery  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("Celery is installed here (the bench extra)")
    done = subprocess.run([sys.executable, "-m", "bench", "compare", "--quick"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install -e '.[bench]'" in done.stderr


def test_a_tiny_tracking_bench_prints_both_cases():
    require_server("Redis", 6379)
    lines = run_bench("tracking", "--chords", "2", "--width", "3", "--redis-db", "3")
    assert [line["case"] for line in lines] == ["dashboard closed", "dashboard open"]
    assert all(line["transitions"] == 10 for line in lines)  # 2 x (3 parts, join, body)
