"""``flowq call`` and ``flowq result``: send a task, read a result."""

from __future__ import annotations

import datetime
import sys
from typing import Any

import click
from kombu.serialization import registry

from flowq.cli import EXIT_FAILURE, EXIT_USAGE, CliError, app_from, main, parse_json, run_guarded

#: The serializers kombu knows (json, pickle, yaml, msgpack), for ``--serializer``.
SERIALIZERS = sorted(registry.name_to_type)


def _moment(value: str, option: str) -> datetime.datetime:
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time, e.g. "
                                 f"2030-01-01T09:00:00+00:00 (no zone: UTC)",
                                 param_hint=option) from None


def _eta(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    return None if value is None else _moment(value, "'--eta'")


def _expires(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return _moment(value, "'--expires'")


@main.command()
@click.argument("name")
@click.option("--args", "args_json", default="[]", help="JSON list of positional arguments.")
@click.option("--kwargs", "kwargs_json", default="{}", help="JSON object of keyword arguments.")
@click.option("--countdown", type=float, help="Seconds to wait before running.")
@click.option("--eta", callback=_eta,
              help="When to run: an ISO 8601 time, e.g. 2030-01-01T09:00:00+00:00 (no zone: "
                   "UTC).")
@click.option("--expires", callback=_expires,
              help="Seconds from now, or an ISO 8601 time, after which the task is revoked "
                   "instead of run.")
@click.option("--serializer", type=click.Choice(SERIALIZERS),
              help="Serializer of the arguments (default: the task_serializer setting).")
@click.option("--queue", help="Queue to send to.")
@click.option("--no-check", is_flag=True,
              help="Send NAME even if the app does not register it (a task only the workers "
                   "import), without checking the arguments.")
@click.pass_context
def call(ctx: click.Context, name: str, args_json: str, kwargs_json: str,
         countdown: float | None, eta: datetime.datetime | None, expires: Any,
         serializer: str | None, queue: str | None, no_check: bool) -> None:
    """Send task NAME and print its id.

    NAME must be registered by the app (-A), and the arguments must fit it, unless
    --no-check is given.

    \b
    Examples:
      flowq -A tasks:app call tasks.add --args '[2, 2]'
      flowq -A tasks:app call tasks.report --eta 2030-01-01T09:00:00+01:00 --expires 3600
      flowq -A tasks:app call tasks.add --kwargs '{"x": 1, "y": 2}' --serializer msgpack
    """
    app = app_from(ctx)
    args, kwargs = parse_json(args_json, "--args", list), parse_json(kwargs_json, "--kwargs", dict)
    given = {"countdown": countdown, "eta": eta, "expires": expires, "serializer": serializer,
             "queue": queue}
    options = {key: value for key, value in given.items() if value is not None}
    if not no_check:
        _check(app, name, args, kwargs, options)
    result = run_guarded(ctx, lambda: app.send_task(name, args, kwargs, **options))
    click.echo(result.id)


def _check(app: Any, name: str, args: list[Any], kwargs: dict[str, Any],
           options: dict[str, Any]) -> None:
    """Refuse, before sending, a name the app does not register (with the closest one),
    arguments that do not fit the task, bad options, or a serializer its workers refuse."""
    from flowq.exceptions import InvalidWorkflow

    try:
        app.validate(app.signature(name), args, kwargs, **options)
    except InvalidWorkflow as exc:
        problems = "; ".join(what for _, what in exc.problems)
        hint = "; to send it anyway (a task only the workers import), add --no-check" if (
            name not in app.tasks) else ""
        raise CliError(problems + hint, EXIT_USAGE) from None
    serializer = options.get("serializer")
    if serializer and registry.name_to_type[serializer] not in app.accepted_content:
        raise CliError(f"--serializer {serializer}: this app's workers accept only "
                       f"{', '.join(sorted(app.conf.accept_content))} (accept_content); add "
                       f"{serializer!r} to accept_content, or leave --serializer out", EXIT_USAGE)


@main.command()
@click.argument("task_id")
@click.option("--wait", is_flag=True, help="Wait for the result.")
@click.option("--timeout", type=float, default=None, help="Seconds to wait with --wait.")
@click.option("--traceback", "show_traceback", is_flag=True,
              help="After a failure, also print the task's traceback.")
@click.pass_context
def result(ctx: click.Context, task_id: str, wait: bool, timeout: float | None,
           show_traceback: bool) -> None:
    """Print the state and result of TASK_ID.

    Exits 1 when the task failed or was revoked, or is not ready within --timeout.

    \b
    Examples:
      flowq -A tasks:app result 5f0c2d9e-... --wait --timeout 10
      flowq -A tasks:app result 5f0c2d9e-... --traceback
    """
    app = app_from(ctx)
    handle = app.AsyncResult(task_id)

    def read() -> tuple[str, Any, str | None]:
        if wait:
            handle.get(timeout=timeout, propagate=False)
        return handle.state, handle.result, handle.traceback if show_traceback else None

    state, value, traceback = run_guarded(ctx, read)
    shown = f"{type(value).__name__}: {value}" if isinstance(value, BaseException) else repr(value)
    click.echo(f"{state} {shown}")
    if traceback:
        click.echo(traceback.rstrip("\n"))
    if state in ("FAILURE", "REVOKED"):
        sys.exit(EXIT_FAILURE)
