"""The app of a test worker process, rebuilt from what the test process describes.

The pytest plugin (:mod:`flowq.contrib.pytest`) starts a real ``flowq worker`` for the
test app. The worker process cannot receive the app object itself, so the test process
describes it in the environment variable ``FLOWQ_TEST_APP`` (JSON: the ``Flowq(...)``
parameters, the settings, the modules to import) and the worker is started with
``-A flowq.contrib.testing:app``, which builds the same app from that description.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from flowq.exceptions import ConfigurationError

if TYPE_CHECKING:
    from flowq.app import Flowq

VARIABLE = "FLOWQ_TEST_APP"


def describe(parameters: Mapping[str, Any], config: Mapping[str, Any],
             includes: Sequence[str]) -> str:
    """The JSON description of an app, for :data:`VARIABLE`; ConfigurationError naming a
    setting that JSON cannot carry to the worker process."""
    for name, value in {**parameters, **config}.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"setting {name!r} = {value!r} cannot be sent to the test worker process "
                f"(it must be JSON: strings, numbers, lists, dicts); set it in a module "
                f"listed by the flowq_includes fixture instead") from None
    return json.dumps({"parameters": dict(parameters), "config": dict(config),
                       "includes": list(includes)})


def build(description: Mapping[str, Any]) -> Flowq:
    """The app ``description`` stands for, with its modules imported (their shared tasks
    register on it)."""
    from flowq.app import Flowq

    app = Flowq(**description["parameters"])
    app.conf.update(description["config"])
    for module in description["includes"]:
        importlib.import_module(module)
    return app


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    text = os.environ.get(VARIABLE)
    if not text:
        raise ConfigurationError(f"{VARIABLE} is not set: this module builds the app of a "
                                 f"worker started by flowq's pytest plugin")
    app = build(json.loads(text))
    globals()["app"] = app
    return app
