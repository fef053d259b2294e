"""``flowq report``: versions, platform and settings (secrets masked), for bug reports."""

from __future__ import annotations

import click

from flowq.cli import app_from, main


@main.command()
@click.pass_context
def report(ctx: click.Context) -> None:
    """Print flowq's and its dependencies' versions, the platform, the app's broker,
    backend and the settings it gives (passwords and keys masked), for a bug report.

    Nothing is contacted; 'flowq inspect report' asks running workers for theirs.

    \b
    Examples:
      flowq -A tasks:app report
      flowq -A tasks:app inspect report -d w1@myhost
    """
    from flowq.runtime.report import report as make_report

    click.echo(make_report(app_from(ctx), ctx.obj.get("app_path")))
