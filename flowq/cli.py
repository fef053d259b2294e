"""The ``flowq`` command line: thin wrappers that parse arguments and call the runtime.

Errors print one line (no traceback unless ``--traceback``) and exit non-zero.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from flowq.exceptions import FlowqError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 69


class CliError(click.ClickException):
    """An error shown as one line."""

    def __init__(self, message: str, code: int = EXIT_FAILURE):
        super().__init__(message)
        self.exit_code = code


def load_object(path: str) -> Any:
    """Import ``module[:attr.attr]`` (the current directory is on the path)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}", EXIT_USAGE) from None
    for part in filter(None, attr.split(".")):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CliError(f"{module_name!r} has no attribute {attr!r}", EXIT_USAGE) from None
    return target


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
    except (FlowqError, OSError) as exc:
        if ctx.find_root().params.get("traceback"):
            raise
        from flowq.exceptions import BackendUnavailable, BrokerUnavailable

        code = EXIT_UNAVAILABLE if isinstance(exc, (BrokerUnavailable, BackendUnavailable,
                                                    OSError)) else EXIT_FAILURE
        raise CliError(f"{type(exc).__name__}: {exc}", code) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-A", "--app", "app_path", envvar="FLOWQ_APP",
              help="The app: module[:attr], e.g. tasks:app.")
@click.option("--traceback", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="flowq")
@click.pass_context
def main(ctx: click.Context, app_path: str | None, traceback: bool) -> None:
    """flowq: run and inspect workflows of background tasks.

    \b
    Examples:
      flowq -A tasks:app worker -c 2
      flowq -A tasks:app call tasks.add --args '[2, 2]'
      flowq -A tasks:app result 5f0c...
      flowq graph examples.workflows.pipeline:workflow --format mermaid
    """
    ctx.ensure_object(dict)
    ctx.obj["app_path"] = app_path


def _app(ctx: click.Context) -> Any:
    return load_app(ctx.obj.get("app_path"))


@main.command()
@click.option("-c", "--concurrency", type=int, help="Pool size (default: CPU count).")
@click.option("-n", "--hostname", help="Node name, e.g. worker1@%h.")
@click.option("-Q", "--queues", help="Comma-separated queues to consume.")
@click.option("-l", "--loglevel", default="INFO", show_default=True, help="Logging level.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"]),
              help="Execution pool.")
@click.option("--prefetch-multiplier", type=int, help="Messages reserved per process.")
@click.option("--max-tasks-per-child", type=int, help="Replace a child after N tasks.")
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, hostname: str | None,
           queues: str | None, loglevel: str, pool: str | None,
           prefetch_multiplier: int | None, max_tasks_per_child: int | None) -> None:
    """Start a worker.

    \b
    Examples:
      flowq -A tasks:app worker
      flowq -A tasks:app worker -c 4 -n w1@%h -Q default,reports -l debug
    """
    from flowq.runtime.worker import Worker, setup_logging

    app = _app(ctx)
    setup_logging(loglevel)
    instance = Worker(app, concurrency=concurrency, queues=_split(queues), hostname=hostname,
                      pool=pool, prefetch_multiplier=prefetch_multiplier,
                      max_tasks_per_child=max_tasks_per_child, app_path=ctx.obj["app_path"])
    code = run_guarded(ctx, instance.run)
    sys.exit(code)


@main.command()
@click.argument("name")
@click.option("--args", "args_json", default="[]", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--countdown", type=float, help="Seconds to wait before running.")
@click.option("--queue", help="Queue to send to.")
@click.pass_context
def call(ctx: click.Context, name: str, args_json: str, kwargs_json: str,
         countdown: float | None, queue: str | None) -> None:
    """Send task NAME and print its id.

    \b
    Example:
      flowq -A tasks:app call tasks.add --args '[2, 2]'
    """
    app = _app(ctx)
    args, kwargs = _json(args_json, "--args", list), _json(kwargs_json, "--kwargs", dict)
    options = {k: v for k, v in {"countdown": countdown, "queue": queue}.items() if v}
    result = run_guarded(ctx, lambda: app.send_task(name, args, kwargs, **options))
    click.echo(result.id)


@main.command()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait for the result.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait with --wait.")
@click.pass_context
def result(ctx: click.Context, task_id: str, wait: bool, timeout: float | None) -> None:
    """Print the state and result of TASK_ID.

    \b
    Example:
      flowq -A tasks:app result 5f0c2d9e-... --wait --timeout 10
    """
    app = _app(ctx)
    handle = app.AsyncResult(task_id)

    def read() -> tuple[str, Any]:
        if wait:
            handle.get(timeout=timeout, propagate=False)
        return handle.state, handle.result

    state, value = run_guarded(ctx, read)
    shown = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else repr(value)
    click.echo(f"{state} {shown}")
    if state in ("FAILURE", "REVOKED"):
        sys.exit(EXIT_FAILURE)


@main.command()
@click.argument("target")
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "mermaid"]),
              default="text", show_default=True)
@click.pass_context
def graph(ctx: click.Context, target: str, fmt: str) -> None:
    """Draw a workflow: TARGET is module:expr (a canvas, or a function returning one).

    \b
    Examples:
      flowq graph examples.workflows.pipeline:workflow
      flowq graph examples.workflows.pipeline:workflow --format dot | dot -Tsvg > wf.svg
    """
    from flowq.canvas.render import render
    from flowq.canvas.signature import Canvas

    found = load_object(target)
    canvas = found() if callable(found) and not isinstance(found, Canvas) else found
    if not isinstance(canvas, Canvas):
        raise CliError(f"{target!r} is not a workflow (got {type(canvas).__name__})", EXIT_USAGE)
    click.echo(run_guarded(ctx, lambda: render(canvas.graph(), fmt)))


@main.command()
@click.option("-Q", "--queues", help="Comma-separated queues (default: the default queue).")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def purge(ctx: click.Context, queues: str | None, force: bool) -> None:
    """Delete all waiting messages from queues.

    \b
    Example:
      flowq -A tasks:app purge -f -Q flowq,reports
    """
    app = _app(ctx)
    names = _split(queues) or [app.conf.task_default_queue]
    if not force:
        click.confirm(f"Delete all waiting messages in {', '.join(names)}?", abort=True)
    for name in names:
        removed = run_guarded(ctx, lambda name=name: app.control.purge([name]))
        click.echo(f"{name}: {removed} message(s) removed")


def _split(value: str | None) -> list[str] | None:
    return [q.strip() for q in value.split(",") if q.strip()] if value else None


def _json(text: str, option: str, kind: type) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise CliError(f"{option} is not valid JSON: {exc}", EXIT_USAGE) from None
    if not isinstance(value, kind):
        raise CliError(f"{option} must be a JSON {'list' if kind is list else 'object'}",
                       EXIT_USAGE)
    return value
