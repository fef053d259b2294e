"""flowq's pytest plugin, run the way a project would: pytester writes a small project
with a task module and tests using the fixtures, runs pytest on it in a subprocess (the
plugin loads from its ``pytest11`` entry point), and checks the outcomes and that every
worker the fixtures started is gone afterwards. The apps are given Redis URLs here; the
embedded default runs docs/integrations.md's pytest example
(tests/integrations/test_docs.py)."""

from __future__ import annotations

import os
import uuid

import pytest
import redis

from tests.integration.harness import REDIS_URL, require_server

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.timeout(180)

TASKS = '''
from flowq import shared_task


@shared_task
def add(x, y):
    return x + y
'''

CONFTEST = '''
import os

import pytest


@pytest.fixture(scope="session")
def flowq_includes():
    return ["myproj.tasks"]


@pytest.fixture(scope="session")
def flowq_config():
    broker = os.environ.get("TEST_BROKER")
    if not broker:
        return {}  # the embedded default, in the session's temporary directory
    return {"broker_url": broker, "result_backend": os.environ["TEST_BACKEND"],
            "task_default_queue": os.environ["TEST_QUEUE"]}


def remember(worker):
    with open(os.environ["PIDS_FILE"], "a") as out:
        out.write(f"{worker.pid}\\n")
'''

TESTS = '''
import pytest

from conftest import remember
from myproj.tasks import add


def test_the_session_worker_runs_a_task(flowq_session_worker, flowq_session_app):
    remember(flowq_session_worker)
    assert add.app is flowq_session_app
    assert add.delay(2, 3).get(timeout=60) == 5
    assert "myproj.tasks.add" in flowq_session_worker.log()


def test_the_session_worker_is_shared(flowq_session_worker):
    remember(flowq_session_worker)
    assert (add.s(1, 1) | add.s(10)).delay().get(timeout=60) == 12


def test_a_worker_of_its_own(flowq_worker, flowq_app):
    remember(flowq_worker)
    assert add.app is flowq_app
    assert add.delay(20, 22).get(timeout=60) == 42


@pytest.mark.flowq(task_always_eager=True)
def test_eager_mode_needs_no_worker(flowq_app):
    @flowq_app.task
    def mul(x, y):
        return x * y

    assert flowq_app.conf.task_always_eager
    assert mul.delay(6, 7).get() == 42
    assert add.delay(1, 2).get() == 3
'''


@pytest.fixture
def project(pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory):
    pytester.mkpydir("myproj")
    pytester.path.joinpath("myproj", "tasks.py").write_text(TASKS)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_with_flowq=TESTS)
    pids = tmp_path_factory.mktemp("pids") / "pids"
    pids.write_text("")
    return pytester, pids


def assert_stopped(pids_file) -> None:
    pids = {int(line) for line in pids_file.read_text().split()}
    assert len(pids) == 2  # one session worker, one for the function-scoped test
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        env: dict[str, str]) -> pytest.RunResult:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in ("FLOWQ_BROKER_URL", "FLOWQ_RESULT_BACKEND", "FLOWQ_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider")


def test_the_fixtures_on_redis(project, monkeypatch):
    require_server("Redis", 6379)
    pytester, pids = project
    token = uuid.uuid4().hex[:10]
    queue, prefix = f"flowq-plugin-{token}", f"flowq-plugin-{token}:"
    try:
        result = run(pytester, monkeypatch, {"PIDS_FILE": str(pids),
                                             "TEST_BROKER": f"{REDIS_URL}/11",
                                             "TEST_BACKEND": f"{REDIS_URL}/11?key_prefix={prefix}",
                                             "TEST_QUEUE": queue})
        result.assert_outcomes(passed=4)
        assert_stopped(pids)
    finally:
        client = redis.Redis.from_url(f"{REDIS_URL}/11")
        for pattern in (f"{prefix}*", f"*{queue}*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            if keys:
                client.delete(*keys)
