"""``flowq purge``."""

from __future__ import annotations

import functools

import click

from flowq.cli import app_from, main, run_guarded, split_list


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
    app = app_from(ctx)
    names = split_list(queues) or [app.conf.task_default_queue]
    if not force:
        click.confirm(f"Delete all waiting messages in {', '.join(names)}?", abort=True,
                      err=True)
    for name in names:
        removed = run_guarded(ctx, functools.partial(app.control.purge, [name]))
        click.echo(f"{name}: {removed} message(s) removed")
