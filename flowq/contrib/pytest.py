"""pytest fixtures for projects that use flowq (Celery's ``celery.contrib.pytest``, with
flowq names). Installed with flowq and loaded by pytest on its own (a ``pytest11`` entry
point); ``-p no:flowq`` turns it off.

Fixtures to override (all session-scoped):

``flowq_config``            settings for the test apps (default ``{}``: the embedded
                            default, in a temporary directory of the session)
``flowq_parameters``        keyword arguments of ``Flowq(...)`` (default ``{"main": "tests"}``)
``flowq_includes``          modules to import into the test apps and their workers: your
                            task modules (``@shared_task``), e.g. ``["proj.tasks"]``
``flowq_worker_parameters`` the worker's ``concurrency``, ``pool``, ``loglevel``,
                            ``queues`` and ``args`` (more command-line arguments)

Fixtures to use:

``flowq_app``               a fresh app for one test, the current app while it runs;
                            ``@pytest.mark.flowq(task_always_eager=True, ...)`` overrides
                            settings for that test (eager mode: tasks run in the test)
``flowq_worker``            a real ``flowq worker`` process for ``flowq_app``, started
                            for the test and stopped after it
``flowq_session_app``       one app for the whole session
``flowq_session_worker``    a real worker for ``flowq_session_app``, started once and
                            stopped at the end of the session

Workers are separate processes, so the tasks they run must be importable: declare them
with ``@shared_task`` in a module listed by ``flowq_includes`` (a task defined inside a
test function exists only in the test process; run it eagerly). Settings must be JSON
values, since they travel to the worker in its environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from flowq.app import Flowq

#: How long a test worker may take to say it is ready (it then consumes).
START_TIMEOUT = 60.0


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "flowq(**settings): override flowq settings for the "
                                       "flowq_app of one test")


class FlowqTestWorker:
    """A ``flowq worker`` process (in its own process group) for a test app."""

    def __init__(self, app: Flowq, description: str, where: Path, cwd: Path,
                 parameters: Mapping[str, Any]):
        from flowq.contrib.testing import VARIABLE

        self.app = app
        self.log_path = where / f"worker-{uuid.uuid4().hex[:8]}.log"
        self.hostname = f"test-{uuid.uuid4().hex[:8]}@%h"
        queues = [app.conf.task_default_queue, *parameters.get("queues", ())]
        command = [sys.executable, "-m", "flowq", "-A", "flowq.contrib.testing:app", "worker",
                   "-n", self.hostname, "-c", str(parameters.get("concurrency", 1)),
                   "-P", str(parameters.get("pool", "prefork")),
                   "-l", str(parameters.get("loglevel", "info")),
                   "-Q", ",".join(dict.fromkeys(queues)), *parameters.get("args", ())]
        env = {**os.environ, VARIABLE: description,
               "PYTHONPATH": os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))}
        with open(self.log_path, "w") as out:
            self.process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready()

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        """What the worker has written so far (its banner, task lines, errors)."""
        return self.log_path.read_text()

    def _wait_ready(self) -> None:
        from flowq.runtime.worker import READY

        deadline = time.monotonic() + START_TIMEOUT
        while READY not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"the test worker exited with code "
                                   f"{self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the test worker did not start within {START_TIMEOUT}s:"
                                   f"\n{self.log()}")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Warm shutdown (SIGTERM); the process group is killed if it lingers."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        except ProcessLookupError:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        return self.process.returncode


def _settings(config: Mapping[str, Any], data_dir: Path) -> dict[str, Any]:
    """``config`` with what keeps concurrent test runs apart: a private data directory
    for the embedded default, and a queue and control namespace of their own."""
    token = uuid.uuid4().hex[:10]
    return {"data_dir": str(data_dir), "task_default_queue": f"flowq-test-{token}",
            "control_exchange": f"flowq-test-{token}", **config}


def _make_app(parameters: Mapping[str, Any], settings: Mapping[str, Any],
              includes: Sequence[str]) -> tuple[Flowq, str]:
    """The test app, and its description for the worker process (the same app there)."""
    from flowq.contrib.testing import build, describe

    description = describe(parameters, settings, includes)
    return build(json.loads(description)), description


@pytest.fixture(scope="session")
def flowq_config() -> Mapping[str, Any]:
    """Settings of the test apps; override to use e.g. Redis: ``{"broker_url": ...}``."""
    return {}


@pytest.fixture(scope="session")
def flowq_parameters() -> Mapping[str, Any]:
    """Keyword arguments for ``Flowq(...)``."""
    return {"main": "tests"}


@pytest.fixture(scope="session")
def flowq_includes() -> Sequence[str]:
    """Modules to import into the test apps and their workers (task modules)."""
    return ()


@pytest.fixture(scope="session")
def flowq_worker_parameters() -> Mapping[str, Any]:
    """``concurrency``, ``pool``, ``loglevel``, ``queues``, ``args`` of test workers."""
    return {}


@pytest.fixture(scope="session")
def _flowq_session(flowq_config: Mapping[str, Any], flowq_parameters: Mapping[str, Any],
                   flowq_includes: Sequence[str],
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flowq, str, Path]]:
    where = tmp_path_factory.mktemp("flowq-session")
    app, description = _make_app(flowq_parameters, _settings(flowq_config, where / "data"),
                                 flowq_includes)
    yield app, description, where
    app.close()


@pytest.fixture(scope="session")
def flowq_session_app(_flowq_session: tuple[Flowq, str, Path]) -> Iterator[Flowq]:
    """One app for the whole session (made current for each test that uses it)."""
    from flowq import _state

    app = _flowq_session[0]
    _state.set_current_app(app)
    yield app


@pytest.fixture(scope="session")
def flowq_session_worker(_flowq_session: tuple[Flowq, str, Path], flowq_session_app: Flowq,
                         flowq_worker_parameters: Mapping[str, Any],
                         pytestconfig: pytest.Config) -> Iterator[FlowqTestWorker]:
    """A real worker for ``flowq_session_app``, for the whole session."""
    app, description, where = _flowq_session
    worker = FlowqTestWorker(app, description, where, pytestconfig.rootpath,
                             flowq_worker_parameters)
    yield worker
    worker.stop()


@pytest.fixture
def _flowq_function(request: pytest.FixtureRequest, flowq_config: Mapping[str, Any],
                    flowq_parameters: Mapping[str, Any], flowq_includes: Sequence[str],
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Flowq, str, Path]]:
    from flowq import _state

    marker = request.node.get_closest_marker("flowq")
    overrides = {**(marker.kwargs if marker else {})}
    where = tmp_path_factory.mktemp("flowq")
    previous = _state.current_app()
    app, description = _make_app(flowq_parameters,
                                 _settings({**flowq_config, **overrides}, where / "data"),
                                 flowq_includes)
    yield app, description, where
    app.close()
    _state.set_current_app(previous)


@pytest.fixture
def flowq_app(_flowq_function: tuple[Flowq, str, Path]) -> Flowq:
    """A fresh app for this test (``@pytest.mark.flowq(**settings)`` overrides settings)."""
    return _flowq_function[0]


@pytest.fixture
def flowq_worker(_flowq_function: tuple[Flowq, str, Path], flowq_app: Flowq,
                 flowq_worker_parameters: Mapping[str, Any],
                 pytestconfig: pytest.Config) -> Iterator[FlowqTestWorker]:
    """A real worker for ``flowq_app``, started for this test and stopped after it."""
    app, description, where = _flowq_function
    worker = FlowqTestWorker(app, description, where, pytestconfig.rootpath,
                             flowq_worker_parameters)
    yield worker
    worker.stop()
