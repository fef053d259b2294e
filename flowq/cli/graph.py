"""``flowq graph``: draw a workflow, before it runs (from code) or while it runs (by root id)."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from flowq.cli import EXIT_FAILURE, EXIT_USAGE, CliError, app_from, load_object, main, run_guarded

#: Moves the cursor home and clears the terminal: --watch redraws in place.
CLEAR_SCREEN = "\x1b[H\x1b[2J"


@main.command()
@click.argument("target")
@click.option("--format", "fmt", type=click.Choice(["text", "dot", "mermaid", "svg", "png"]),
              default="text", show_default=True,
              help="svg and png are pictures drawn without Graphviz (png needs "
                   "flowq[png]).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True),
              help="Write the drawing to this file instead of standard output (with --watch:"
                   " rewritten as it changes).")
@click.option("-t", "--timeout", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="With a task id: seconds to wait for workers to say what they run "
                   "(0: do not ask).")
@click.option("--watch", is_flag=True,
              help="With a task id: redraw every --interval seconds until the workflow ends.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between two drawings with --watch.")
@click.option("--max-wait", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="With --watch: give up (exit 1) if the workflow still runs after this many "
                   "seconds.")
@click.pass_context
def graph(ctx: click.Context, target: str, fmt: str, output: str | None, timeout: float,
          watch: bool, interval: float, max_wait: float) -> None:
    """Draw a workflow. TARGET is module:expr (a canvas built at module level, such as
    add.s(2, 2) | mul.s(10), or a function returning one), or the id of any task of a
    sent workflow (its root id or any node's; needs -A) to draw the whole workflow with
    each node's live state.

    \b
    Examples:
      flowq graph examples.workflows.quickstart:workflow_chord
      flowq graph examples.workflows.quickstart:workflow_chord --format dot | dot -Tsvg > wf.svg
      flowq -A tasks:app graph 5f0c2d9e-1b7a-4c1e-9a57-0d6c2f0e8b11
      flowq -A tasks:app graph 5f0c2d9e-1b7a-4c1e-9a57-0d6c2f0e8b11 --watch
      flowq -A tasks:app graph 5f0c2d9e-1b7a-4c1e-9a57-0d6c2f0e8b11 --format svg -o wf.svg
    """
    if ":" in target:
        if watch:
            raise CliError("--watch follows a sent workflow: give the id of one of its tasks, "
                           "not module:expr", EXIT_USAGE)
        canvas_graph = _canvas_graph(target)
        _emit(run_guarded(ctx, lambda: _draw(canvas_graph, fmt)), output)
        return
    if not ctx.obj.get("app_path"):
        raise CliError(f"{target!r} is not module:expr; to draw a sent workflow by its "
                       f"root id, give the app: flowq -A tasks:app graph {target}",
                       EXIT_USAGE)
    app = app_from(ctx)
    flow = run_guarded(ctx, lambda: _find(app, target))
    if watch:
        run_guarded(ctx, lambda: _watch(flow, fmt, output, timeout, interval, max_wait))
    else:
        _emit(run_guarded(ctx, lambda: _draw(flow.graph(timeout), fmt)), output)


def _draw(graph_of: Any, fmt: str) -> str | bytes:
    if fmt == "png":
        from flowq.canvas.render_png import to_png

        return to_png(graph_of)
    from flowq.canvas.render import render

    return render(graph_of, fmt)


def _emit(drawing: str | bytes, output: str | None) -> None:
    """Print ``drawing``, or write it to ``output`` (whole, then renamed into place, so a
    reader of the file never sees half a drawing)."""
    if output is None:
        if isinstance(drawing, bytes):
            if sys.stdout.isatty():
                raise CliError("a PNG is binary: write it with -o FILE.png, or redirect "
                               "standard output to a file", EXIT_USAGE)
            sys.stdout.buffer.write(drawing)
            sys.stdout.buffer.flush()
        else:
            click.echo(drawing.rstrip("\n"))
        return
    data = drawing if isinstance(drawing, bytes) else (drawing.rstrip("\n") + "\n").encode()
    partial = f"{output}.partial"
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, output)


def _watch(flow: Any, fmt: str, output: str | None, timeout: float, interval: float,
           max_wait: float) -> None:
    """Draw ``flow`` again every ``interval`` seconds, each time it changed, until it ends.

    On a terminal each drawing replaces the last one; elsewhere (a pipe, a file) drawings
    follow each other, separated by a blank line.
    """
    from flowq.runtime import live

    deadline = time.monotonic() + max_wait
    in_place = output is None and sys.stdout.isatty()
    shown: str | bytes | None = None
    while True:
        drawn = flow.graph(timeout)
        drawing = _draw(drawn, fmt)
        if drawing != shown:
            if output is not None:
                _emit(drawing, output)
            elif isinstance(drawing, bytes):
                raise CliError("--watch --format png needs -o FILE.png", EXIT_USAGE)
            elif in_place:
                click.echo(CLEAR_SCREEN + drawing.rstrip("\n"))
            else:
                click.echo(("" if shown is None else "\n") + drawing.rstrip("\n"))
            shown = drawing
        if not live.unfinished(flow.dag, drawn):
            return
        if time.monotonic() + interval > deadline:
            raise CliError(f"workflow {flow.root_id} is still running after {max_wait:g}s "
                           f"(--max-wait)", EXIT_FAILURE)
        time.sleep(interval)


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


def _find(app: Any, task_id: str) -> Any:
    """The sent workflow ``task_id`` belongs to, or a one-line error saying why none is."""
    from flowq.exceptions import WorkflowNotFound

    try:
        return app.workflow(task_id)
    except WorkflowNotFound as exc:
        raise CliError(str(exc), EXIT_FAILURE) from None
