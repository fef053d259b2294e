"""``flowq workflows``: the recent workflows, or the stuck ones (``--stuck``)."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import click

from flowq.cli import EXIT_FAILURE, EXIT_USAGE, CliError, app_from, main, run_guarded

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")


class Duration(click.ParamType):
    """Seconds, written ``90``, ``90s``, ``10m``, ``2h`` or ``1d``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        match = _DURATION.fullmatch(str(value).strip())
        if not match:
            self.fail(f"{value!r} is not a duration: write 30s, 10m, 2h, 1d or seconds", param,
                      ctx)
        return float(match[1]) * _UNITS[match[2] or "s"]


@main.command()
@click.option("--stuck", is_flag=True,
              help="Only workflows with a pending node that no message will run.")
@click.option("--for", "idle", type=Duration(), default="10m", show_default=True,
              help="With --stuck: how long no node may have finished.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many of the most recent workflows to look at.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="With --stuck: seconds to wait for workers' replies.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per workflow.")
@click.pass_context
def workflows(ctx: click.Context, stuck: bool, idle: float, limit: int, timeout: float,
              as_json: bool) -> None:
    """List the workflows sent most recently (newest first), with their progress.

    With --stuck, list only those with a pending node, no node finished for --for, and no
    message for that node queued, delayed or held by a worker, with the path of each such
    node; exit 1 when there is one.

    \b
    Examples:
      flowq -A tasks:app workflows
      flowq -A tasks:app workflows --stuck --for 10m
    """
    from flowq.runtime import stuck as stuck_workflows
    from flowq.runtime import tracking

    app = app_from(ctx)
    if not stuck:
        if ctx.get_parameter_source("idle") is not click.core.ParameterSource.DEFAULT:
            raise CliError("--for goes with --stuck: flowq workflows --stuck --for 10m",
                           EXIT_USAGE)
        listed = run_guarded(ctx, lambda: tracking.recent(app.runtime.backend, limit))
        for tracked in listed:
            click.echo(json.dumps(_doc(tracked)) if as_json else _line(tracked))
        if not listed and not as_json:
            click.echo("no workflow sent recently (sent from outside a task, within "
                       "result_expires)")
        return
    found = run_guarded(ctx, lambda: stuck_workflows.find(app, idle, limit, timeout))
    for item in found:
        if as_json:
            click.echo(json.dumps({**_doc(item.tracked), "waiting": [
                {"path": w.path, "task": w.task, "id": w.task_id, "queue": w.queue}
                for w in item.waiting]}))
            continue
        click.echo(_line(item.tracked))
        for w in item.waiting:
            click.echo(f"    waiting: {w.path} ({w.task}) id {w.task_id}, queue {w.queue}: "
                       f"no message queued, delayed or at a worker")
    if not found and not as_json:
        click.echo(f"no stuck workflow among the {limit} most recent (idle for {idle:g}s)")
    if found:
        ctx.exit(EXIT_FAILURE)


def _doc(tracked: Any) -> dict[str, Any]:
    return {"root_id": tracked.root_id, "shape": tracked.shape, "first": tracked.first,
            "state": tracked.state, "done": tracked.done, "total": tracked.total,
            "failed": tracked.failed, "created": tracked.created,
            "last_change": tracked.last_change}


def _line(tracked: Any) -> str:
    failed = f", {tracked.failed} failed" if tracked.failed else ""
    return (f"{tracked.root_id}  {tracked.state:<8} {tracked.done}/{tracked.total}{failed}  "
            f"{tracked.shape} of {tracked.first or '?'}, sent {age(time.time() - tracked.created)}"
            f" ago")


def age(seconds: float) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: how long ago, roughly."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
