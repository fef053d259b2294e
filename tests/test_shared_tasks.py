"""shared_task, autodiscover_tasks and config_from_object("module:attr"), in one process.

A worker running autodiscovered shared tasks is tested in
tests/integration/test_shared_tasks_worker.py and, with Django, in tests/test_django.py.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowq import Flowq, _state, shared
from flowq.exceptions import ConfigurationError


@pytest.fixture(autouse=True)
def forget_declarations() -> Iterator[None]:
    """Shared tasks declared here must not reach apps that later tests create."""
    declared = list(shared._declarations)
    current = _state.current_app()
    yield
    shared._declarations[:] = declared
    _state.set_current_app(current)


def eager(name: str) -> Flowq:
    return Flowq(name, broker="memory://", backend="memory://", task_always_eager=True)


def test_a_task_declared_before_any_app_reaches_every_app_created_later():
    @shared.shared_task
    def add(x: int, y: int) -> int:
        return x + y

    first, second = eager("first"), eager("second")
    name = f"{__name__}.add"
    assert name in first.tasks and name in second.tasks
    assert first.tasks[name] is not second.tasks[name]
    assert first.tasks[name].app is first and second.tasks[name].app is second


def test_calls_go_to_the_current_apps_task():
    first = eager("first")

    @shared.shared_task(name="shared.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    second = eager("second")  # now the current app
    assert mul.app is second
    assert mul.delay(6, 7).get() == 42
    assert mul.s(2, 3).app is second
    _state.set_current_app(first)
    assert mul.app is first and mul.name == "shared.mul"
    assert mul(3, 3) == 9
    assert repr(mul) == f"<@shared_task: {__name__}.mul>"


def test_options_and_bind_apply_on_every_app():
    app = eager("bound")

    @shared.shared_task(bind=True, max_retries=7)
    def whoami(self) -> str:
        return self.name

    assert app.tasks[f"{__name__}.whoami"].max_retries == 7
    assert whoami() == f"{__name__}.whoami"
    assert whoami.apply().get() == f"{__name__}.whoami"


def test_an_unknown_option_fails_at_declaration_naming_it():
    eager("strict")
    with pytest.raises(ConfigurationError, match=r"unknown option 'max_retry' \(did you mean "
                                                 r"'max_retries'\?\)"):
        @shared.shared_task(max_retry=3)
        def f() -> None: ...


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """billing (has tasks), docs (no tasks module), broken (tasks fails to import)."""
    for package, tasks in {
        "billing_pkg": '''
            from flowq import shared_task

            @shared_task
            def charge(amount):
                return f"charged {amount}"
        ''',
        "docs_pkg": None,
        "broken_pkg": "import a_module_that_does_not_exist\n",
    }.items():
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        if tasks is not None:
            (tmp_path / package / "tasks.py").write_text(textwrap.dedent(tasks))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0].endswith("_pkg")]:
        del sys.modules[name]


def test_autodiscovery_waits_for_finalize_and_skips_packages_without_tasks(packages: Path):
    app = eager("discovering")
    app.autodiscover_tasks(["billing_pkg", "docs_pkg"])
    assert "billing_pkg.tasks.charge" not in app.tasks
    assert "billing_pkg.tasks" not in sys.modules
    app.finalize()
    assert app.tasks["billing_pkg.tasks.charge"].apply((5,)).get() == "charged 5"
    app.finalize()  # idempotent


def test_autodiscovery_with_force_and_a_callable(packages: Path):
    app = eager("forced")
    wanted: list[str] = []
    app.autodiscover_tasks(lambda: wanted)  # read when finalized, not now
    wanted.append("billing_pkg")
    app.finalize()
    assert "billing_pkg.tasks.charge" in app.tasks
    other = eager("other")
    other.autodiscover_tasks(["billing_pkg"], force=True)  # already imported: still bound
    assert "billing_pkg.tasks.charge" in other.tasks


def test_autodiscovery_raises_errors_inside_task_modules_and_for_missing_packages(
        packages: Path):
    app = eager("errors")
    with pytest.raises(ModuleNotFoundError, match="a_module_that_does_not_exist"):
        app.autodiscover_tasks(["broken_pkg"], force=True)
    with pytest.raises(ModuleNotFoundError, match="no_such_pkg"):
        app.autodiscover_tasks(["no_such_pkg"], force=True)


def test_autodiscovery_without_packages_needs_django(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    app = eager("nodjango")
    app.autodiscover_tasks()
    with pytest.raises(ConfigurationError, match="DJANGO_SETTINGS_MODULE is not set|"
                                                 "Django is not installed"):
        app.finalize()


def test_config_from_an_attribute_path_with_a_namespace(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "proj_settings_pkg.py").write_text(textwrap.dedent('''
        class Settings:
            FLOWQ_TASK_DEFAULT_QUEUE = "reports"
            FLOWQ_RESULT_EXPIRES = 60
            DEBUG = True
            task_default_queue = "ignored: not in the namespace"

        settings = Settings()
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    app = eager("configured")
    app.config_from_object("proj_settings_pkg:settings", namespace="FLOWQ")
    assert (app.conf.task_default_queue, app.conf.result_expires) == ("reports", 60)
    del sys.modules["proj_settings_pkg"]
