"""A report for bug reports and support: versions, platform, app, settings (masked).

``flowq report`` prints it for the app of the command line; ``flowq inspect report``
asks running workers for theirs, which shows what a worker really runs with.
"""

from __future__ import annotations

import platform
from importlib import metadata
from typing import TYPE_CHECKING

from flowq.runtime import broker
from flowq.settings import mask_url

if TYPE_CHECKING:
    from flowq.app import Flowq

#: Task names listed at most (a big app says how many more).
TASKS_SHOWN = 30
#: Distributions whose versions matter to flowq's behaviour (optional ones last).
DISTRIBUTIONS = ("kombu", "amqp", "billiard", "redis", "attrs", "networkx", "click",
                 "msgpack", "PyYAML")


def version_of(distribution: str) -> str:
    """The installed version of ``distribution``, or ``not installed``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def report(app: Flowq, app_path: str | None = None) -> str:
    """The report of ``app`` in this process, as lines of text; secrets are masked."""
    conf = app.conf
    tasks = sorted(name for name in app.tasks if not name.startswith("flowq."))
    lines = [
        f"flowq {version_of('flowq')} on Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.platform()}",
        "dependencies: " + ", ".join(f"{name} {version_of(name)}" for name in DISTRIBUTIONS),
        f"app: {app_path or app.main or '__main__'} ({len(tasks)} task(s)"
        + (f": {', '.join(tasks[:TASKS_SHOWN])}" if tasks else "")
        + (f", +{len(tasks) - TASKS_SHOWN} more)" if len(tasks) > TASKS_SHOWN else ")"),
        f"broker: {broker.describe(conf)}",
        f"result backend: {mask_url(conf.result_backend) or 'the embedded default'}",
        f"data_dir: {conf.data_dir}",
        "settings given (the rest are defaults):",
    ]
    given = conf.changed()
    lines += [f"  {name} = {value!r}" for name, value in sorted(given.items())] or ["  (none)"]
    return "\n".join(lines)
