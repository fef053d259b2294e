"""The ``flowq`` command line: thin wrappers that parse arguments and call the runtime.

Errors print one line (no traceback unless ``--traceback``) and exit with one of the
``EXIT_*`` codes: 1 for an error or a failed task, 2 for a usage error (bad option,
unknown command, an ``-A`` path naming no module), 69 (``EX_UNAVAILABLE``) when the
broker, the result backend or every asked worker cannot be reached.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from kombu.exceptions import KombuError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from flowq.exceptions import FlowqError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 69


class CliError(click.ClickException):
    """An error shown as one line."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.code = code

    @property  # click reads exit_code when it exits
    def exit_code(self) -> int:  # type: ignore[override]
        return self.code


def wants_traceback(ctx: click.Context | None) -> bool:
    """Whether ``flowq --traceback`` was given (then errors propagate as they are)."""
    return ctx is not None and bool(ctx.find_root().params.get("traceback"))


def load_object(path: str) -> Any:
    """Import ``module[:attr.attr]`` (the current directory is on the path); the module
    may also be given as the path of its file, ``tasks.py`` or ``proj/tasks.py``.

    A module that cannot be found is a usage error (2); one that is found but fails while
    importing (any exception: a syntax error, a bad setting, a missing dependency) is an
    error (1) naming the module and the exception; both are one line unless --traceback.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    where, _, attr = path.partition(":")
    module_name = module_of_file(where) if where.endswith(".py") or "/" in where else where
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        if _names_module(exc, module_name):
            raise CliError(f"cannot import {module_name!r}: {exc}", EXIT_USAGE) from None
        if wants_traceback(click.get_current_context(silent=True)):
            raise
        raise CliError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}; "
                       f"run 'flowq --traceback ...' to see where") from None
    for part in filter(None, attr.split(".")):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"{module_name!r} has no attribute {attr!r}", EXIT_USAGE) from None
    return target


def module_of_file(where: str) -> str:
    """The dotted module name of the file ``where`` (``proj/tasks.py`` is ``proj.tasks``
    when ``proj`` is a package), with the directory above its packages put on the path.

    The name is the one ``-A proj.tasks`` would import, so task names (``module.function``)
    are the same whichever way the app was given.
    """
    file = Path(where)
    if not where.endswith(".py"):
        dotted = where.strip("/").replace("/", ".")
        raise CliError(f"-A {where!r} is neither a module nor a .py file; give the module "
                       f"with dots, e.g. -A {dotted}", EXIT_USAGE)
    if not file.is_file():
        raise CliError(f"-A {where!r} names a file, but there is no {file} in {os.getcwd()}; "
                       f"give the file's path or its module, e.g. -A {file.stem}", EXIT_USAGE)
    file = file.resolve()
    parts, top = [file.stem], file.parent
    while (top / "__init__.py").is_file():
        parts.insert(0, top.name)
        top = top.parent
    if str(top) not in sys.path:
        sys.path.insert(0, str(top))
    return ".".join(parts)


def _names_module(exc: Exception, module_name: str) -> bool:
    """Whether ``exc`` says ``module_name`` (or a package above it) does not exist, rather
    than that the module's own code failed, e.g. on an import of its own."""
    missing = getattr(exc, "name", None) if isinstance(exc, ModuleNotFoundError) else None
    return bool(missing) and (module_name == missing or module_name.startswith(f"{missing}."))


def load_app(path: str | None) -> Any:
    """The app named by ``-A module[:attr]``; a module's ``app`` or only Flowq instance."""
    from flowq.app import Flowq

    if not path:
        raise CliError("no app given: use flowq -A module[:attr] ... (e.g. -A tasks:app)",
                       EXIT_USAGE)
    found = load_object(path)
    if isinstance(found, Flowq):
        return found
    if ":" not in path:
        apps = [v for v in vars(found).values() if isinstance(v, Flowq)]
        if hasattr(found, "app") and isinstance(found.app, Flowq):
            return found.app
        if len(apps) == 1:
            return apps[0]
    raise CliError(f"{path!r} is not a flowq app (expected a Flowq instance, e.g. -A tasks:app)",
                   EXIT_USAGE)


def run_guarded(ctx: click.Context, action: Callable[[], Any]) -> Any:
    """Run ``action``; turn flowq errors into one clean line unless --traceback."""
    try:
        return action()
    except (CliError, click.exceptions.Exit, click.Abort):
        raise
    except (FlowqError, OSError, KombuError, RedisError) as exc:
        if wants_traceback(ctx):
            raise
        raise CliError(f"{type(exc).__name__}: {exc}", exit_code_of(exc)) from None


def exit_code_of(exc: Exception) -> int:
    """69 for a broker or backend that cannot be reached, 1 for any other error.

    flowq's own errors are sorted by their class first: ``flowq.exceptions.TimeoutError``
    (a result not ready in time) is also the builtin ``TimeoutError``, an ``OSError``, so
    that ``except TimeoutError`` catches it, but it says nothing about reachability.
    """
    from flowq.exceptions import BackendUnavailable, BrokerUnavailable

    if isinstance(exc, FlowqError):
        unreachable: tuple[type[Exception], ...] = (BrokerUnavailable, BackendUnavailable)
    else:  # kombu, redis and socket errors from calls that do not wrap them yet
        unreachable = (OSError, OperationalError, RedisConnectionError, RedisTimeoutError)
    return EXIT_UNAVAILABLE if isinstance(exc, unreachable) else EXIT_FAILURE


APP_HELP = "The app: module[:attr] or file.py[:attr], e.g. tasks:app."
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "FATAL")
#: ``-l LEVEL``: a bad level is a usage error that lists the valid ones.
LOG_LEVEL = click.Choice(LOG_LEVELS, case_sensitive=False)


def _remember_app(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)["app_path"] = value  # the dict every context shares


def app_option() -> click.Option:
    """``-A`` where a Celery user types it: after the command's name too
    (``flowq worker -A tasks:app``); it wins over one given before the name."""
    return click.Option(["-A", "--app", "app_path"], expose_value=False,
                        callback=_remember_app, help=APP_HELP)


def _takes_app(command: click.Command) -> None:
    if not any("-A" in param.opts for param in command.params):
        command.params.append(app_option())


class Command(click.Command):
    """A flowq command: it accepts ``-A`` after its name."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _takes_app(self)


class Group(click.Group):
    """A click group whose unknown commands are one error line (click adds its usage
    text to them); its subgroups are of this class too, and every command in it accepts
    ``-A`` after its name."""

    group_class = type
    command_class = Command

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        _takes_app(self)

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name = args[0]
        if self.get_command(ctx, name) is None and not ctx.resilient_parsing:
            raise CliError(f"no such command {name!r}; run '{ctx.command_path} --help' for "
                           f"the list", EXIT_USAGE)
        return super().resolve_command(ctx, args)


@click.group("flowq", cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-A", "--app", "app_path", envvar="FLOWQ_APP", help=APP_HELP)
@click.option("--traceback", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="flowq")
@click.pass_context
def main(ctx: click.Context, app_path: str | None, traceback: bool) -> None:
    """flowq: run and inspect workflows of background tasks.

    \b
    Examples:
      flowq -A tasks:app worker -c 2
      flowq worker -A tasks.py -l debug
      flowq -A tasks:app call tasks.add --args '[2, 2]'
      flowq -A tasks:app result 5f0c...
      flowq -A tasks:app status
      flowq -A tasks:app inspect active
      flowq graph examples.workflows.quickstart:workflow_chord --format mermaid
      flowq -A tasks:app resume 5f0c...
    """
    ctx.ensure_object(dict)
    ctx.obj["app_path"] = app_path


def app_from(ctx: click.Context) -> Any:
    """The ``-A`` app, finalized: the task modules it autodiscovers are imported."""
    app = load_app(ctx.obj.get("app_path"))
    try:
        app.finalize()
    except Exception as exc:
        if wants_traceback(ctx):
            raise
        raise CliError(f"importing the app's task modules failed: {type(exc).__name__}: "
                       f"{exc}; run 'flowq --traceback ...' to see where") from None
    return app


def split_list(value: str | None) -> list[str] | None:
    return [q.strip() for q in value.split(",") if q.strip()] if value else None


def parse_json(text: str, option: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{option} is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(value, kind):
        raise CliError(f"{option} must be a JSON {'list' if kind is list else 'object'}",
                       EXIT_USAGE)
    return value


# Command modules register themselves on ``main`` when imported.
from flowq.cli import (  # noqa: E402,F401
    beat, calls, dashboard, events, graph, inspect, purge, report, resume, shell, worker,
    workflows)
