"""``flowq graph``: draw a workflow, before it runs (from code) or while it runs (by root id)."""

from __future__ import annotations

from typing import Any

import click

from flowq.cli import EXIT_FAILURE, EXIT_USAGE, CliError, app_from, load_object, main, run_guarded


@main.command()
@click.argument("target")
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "mermaid"]),
              default="text", show_default=True)
@click.option("-t", "--timeout", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="With a root id: seconds to wait for workers to say what they run "
                   "(0: do not ask).")
@click.pass_context
def graph(ctx: click.Context, target: str, fmt: str, timeout: float) -> None:
    """Draw a workflow. TARGET is module:expr (a canvas built at module level, such as
    add.s(2, 2) | mul.s(10), or a function returning one), or the root id of a sent
    workflow (needs -A) to draw it with each node's live state.

    \b
    Examples:
      flowq graph examples.workflows.quickstart:workflow_chord
      flowq graph examples.workflows.quickstart:workflow_chord --format dot | dot -Tsvg > wf.svg
      flowq -A tasks:app graph 5f0c2d9e-1b7a-4c1e-9a57-0d6c2f0e8b11
    """
    from flowq.canvas.render import render

    if ":" in target:
        graph_of = _canvas_graph(target)
    else:
        if not ctx.obj.get("app_path"):
            raise CliError(f"{target!r} is not module:expr; to draw a sent workflow by its "
                           f"root id, give the app: flowq -A tasks:app graph {target}",
                           EXIT_USAGE)
        app = app_from(ctx)
        graph_of = run_guarded(ctx, lambda: _live_graph(app, target, timeout))
    click.echo(run_guarded(ctx, lambda: render(graph_of, fmt)))


def _canvas_graph(target: str) -> Any:
    """The graph of the canvas ``target`` names, or of the one its function returns."""
    from flowq.canvas.signature import Canvas
    from flowq.task import Task

    found = load_object(target)
    if isinstance(found, Task):  # calling it would run the task here, without arguments
        raise CliError(f"{target!r} is a task, not a workflow: pass a signature instead, "
                       f"e.g. module:name where name = {found.fn.__name__}.s(...) is built at "
                       f"module level", EXIT_USAGE)
    canvas = found() if callable(found) and not isinstance(found, Canvas) else found
    if not isinstance(canvas, Canvas):
        raise CliError(f"{target!r} is not a workflow (got {type(canvas).__name__})", EXIT_USAGE)
    return canvas.graph()


def _live_graph(app: Any, root_id: str, timeout: float) -> Any:
    from flowq.runtime import live

    workflow = live.find(app, root_id)
    if workflow is None:
        record = app.backend.get(root_id)
        detail = (f"task {root_id} is {record.state}, but no workflow is stored for it (a "
                  f"single task, one sent from inside a task, or expired after result_expires)"
                  if record else f"nothing is known about {root_id} (wrong id, another app "
                                 f"or backend, or expired after result_expires)")
        raise CliError(detail, EXIT_FAILURE)
    drawn = live.live_graph(app, workflow)
    if timeout > 0 and live.unfinished(workflow, drawn):
        drawn = live.live_graph(app, workflow, live.running_ids(app, root_id, timeout))
    return drawn
