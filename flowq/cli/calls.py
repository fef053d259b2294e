"""``flowq call`` and ``flowq result``: send a task, read a result."""

from __future__ import annotations

import sys
from typing import Any

import click

from flowq.cli import EXIT_FAILURE, app_from, main, parse_json, run_guarded


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
    app = app_from(ctx)
    args, kwargs = parse_json(args_json, "--args", list), parse_json(kwargs_json, "--kwargs", dict)
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

    Exits 1 when the task failed or was revoked, or is not ready within --timeout.

    \b
    Example:
      flowq -A tasks:app result 5f0c2d9e-... --wait --timeout 10
    """
    app = app_from(ctx)
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
