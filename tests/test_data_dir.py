"""Where the embedded default keeps its files: beside the file that defines the app.

``conf.data_dir`` is always absolute; a relative value (the default ``.flowq``, a
``data_dir`` setting, ``FLOWQ_DATA_DIR``) is taken from the directory of the file that
created the app, so a worker and a producer started in different directories agree.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from flowq import Flowq


def app_defined_in(path: Path, source: str = 'from flowq import Flowq\napp = Flowq("m")\n'):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"defines_app_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest.fixture(autouse=True)
def no_data_dir_variable(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("FLOWQ_DATA_DIR", raising=False)


def test_the_default_is_beside_the_defining_file_whatever_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    app = app_defined_in(tmp_path / "proj" / "tasks.py")
    assert app.conf.data_dir == str(tmp_path / "proj" / ".flowq")
    monkeypatch.chdir(tmp_path / "proj")  # a later chdir changes nothing
    assert app.conf.data_dir == str(tmp_path / "proj" / ".flowq")


def test_a_symlinked_file_resolves_to_the_real_one(tmp_path: Path):
    real = tmp_path / "real" / "tasks.py"
    app_defined_in(real)
    (tmp_path / "link").mkdir()
    (tmp_path / "link" / "tasks.py").symlink_to(real)
    app = app_defined_in(tmp_path / "link" / "tasks.py", real.read_text())
    assert app.conf.data_dir == str(tmp_path / "real" / ".flowq")


def test_a_relative_setting_is_taken_from_the_defining_file(tmp_path: Path):
    app = app_defined_in(tmp_path / "proj" / "tasks.py",
                         'from flowq import Flowq\napp = Flowq("m", data_dir="../var/q")\n')
    assert app.conf.data_dir == str(tmp_path / "var" / "q")


def test_an_absolute_or_home_setting_is_used_as_it_is(tmp_path: Path):
    app = app_defined_in(tmp_path / "tasks.py")
    app.conf.data_dir = str(tmp_path / "elsewhere")
    assert app.conf.data_dir == str(tmp_path / "elsewhere")
    app.conf.data_dir = "~/flowq-data"
    assert app.conf.data_dir == os.path.expanduser("~/flowq-data")


def test_the_environment_variable_overrides_the_default_not_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    app = app_defined_in(tmp_path / "proj" / "tasks.py")
    monkeypatch.setenv("FLOWQ_DATA_DIR", str(tmp_path / "shared"))
    assert app.conf.data_dir == str(tmp_path / "shared")
    monkeypatch.setenv("FLOWQ_DATA_DIR", "relative")
    assert app.conf.data_dir == str(tmp_path / "proj" / "relative")
    app.conf.data_dir = str(tmp_path / "set")
    assert app.conf.data_dir == str(tmp_path / "set")


def test_an_app_made_by_code_with_no_file_uses_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"Flowq": Flowq}
    exec(compile('app = Flowq("repl")', "<stdin>", "exec"), namespace)
    assert namespace["app"].conf.data_dir == str(tmp_path / ".flowq")  # type: ignore[attr-defined]


def test_the_embedded_urls_use_the_absolute_directory(tmp_path: Path):
    from flowq.runtime.broker import broker_url

    app = app_defined_in(tmp_path / "tasks.py")
    assert broker_url(app.conf) == f"sqlite:///{tmp_path}/.flowq/broker.db"
    assert app.conf.as_dict()["data_dir"] == str(tmp_path / ".flowq")
