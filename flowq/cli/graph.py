"""``flowq graph``: draw a workflow."""

from __future__ import annotations

import click

from flowq.cli import EXIT_USAGE, CliError, load_object, main, run_guarded


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
