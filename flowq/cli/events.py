"""``flowq events`` (a live stream of worker events) and ``flowq monitor`` (a live table)."""

from __future__ import annotations

import fnmatch
import json
import sys
import time
from typing import Any

import click

from flowq.cli import EXIT_FAILURE, CliError, app_from, main, run_guarded, split_list

#: ANSI: clear the screen, cursor home, clear to end of line, clear to end of screen.
CLEAR_SCREEN, HOME, CLEAR_LINE, CLEAR_BELOW = "\x1b[2J", "\x1b[H", "\x1b[K", "\x1b[J"
#: Seconds of silence after which ``flowq events`` asks the workers whether any of them
#: sends events (one that does sends a heartbeat every 2 s).
QUIET = 3.0


@main.command()
@click.option("--count", type=click.IntRange(min=1), help="Stop after N events.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True),
              help="Stop after this many seconds.")
@click.option("--type", "types", multiple=True,
              help="Only events whose type matches (glob, repeatable), e.g. 'task-*'.")
@click.option("--json", "as_json", is_flag=True, help="Print each event as a JSON object.")
@click.pass_context
def events(ctx: click.Context, count: int | None, timeout: float | None,
           types: tuple[str, ...], as_json: bool) -> None:
    """Print worker events as they happen, one line each.

    Workers send events only when started with -E (or worker_send_task_events = True),
    or after 'flowq control enable_events'. When nothing is heard for a few seconds and
    the workers that answer all have events off, that is an error (exit 1). With
    --count, not seeing N events before --timeout is an error too.

    \b
    Examples:
      flowq -A tasks:app events
      flowq -A tasks:app events --type 'task-*' --json
      flowq -A tasks:app events --count 3 --timeout 30
    """
    from flowq.runtime.broker import describe
    from flowq.runtime.events import EventReceiver, format_event

    app = app_from(ctx)
    seen = 0

    def listen() -> None:
        nonlocal seen
        with EventReceiver(app) as receiver:
            click.echo(f"Listening for events on {describe(app.conf)} (Ctrl-C to stop)",
                       err=True)
            deadline = None if timeout is None else time.monotonic() + timeout
            heard = False
            while deadline is None or time.monotonic() < deadline:
                left = None if deadline is None else deadline - time.monotonic()
                window = left if heard else min(QUIET, left or QUIET)
                for event in receiver.events(timeout=window):
                    heard = True
                    if types and not any(fnmatch.fnmatchcase(event["type"], t) for t in types):
                        continue
                    click.echo(json.dumps(event, sort_keys=True) if as_json
                               else format_event(event))
                    seen += 1
                    if count is not None and seen >= count:
                        return
                if not heard:
                    _check_senders(app, ctx.obj.get("app_path"))

    try:
        run_guarded(ctx, listen)
    except KeyboardInterrupt:
        return
    if count is not None and seen < count:
        raise CliError(f"only {seen} of {count} event(s) within {timeout or 0:g}s",
                       EXIT_FAILURE)


def _check_senders(app: Any, app_path: str | None) -> None:
    """Fail when the workers that answer all have events off: nothing will come."""
    stats: dict[str, Any] = app.control.inspect(timeout=1.0).stats() or {}
    if stats and not any(answer.get("events") for answer in stats.values()):
        names = ", ".join(sorted(stats)[:5]) + (", ..." if len(stats) > 5 else "")
        raise CliError(f"no worker sends events: the {len(stats)} that answered ({names}) have "
                       f"them off; start workers with -E (or worker_send_task_events = True), "
                       f"or turn them on now with 'flowq -A {app_path} control enable_events'",
                       EXIT_FAILURE)


@main.command()
@click.option("--once", is_flag=True, help="Print one snapshot and exit.")
@click.option("-i", "--interval", type=click.FloatRange(min=0.2), default=2.0,
              show_default=True, help="Seconds between refreshes.")
@click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True), default=1.0,
              show_default=True, help="Seconds to wait for workers' replies.")
@click.option("-Q", "--queues", help="Also show these queues (comma-separated).")
@click.pass_context
def monitor(ctx: click.Context, once: bool, interval: float, timeout: float,
            queues: str | None) -> None:
    """Show a live table of workers and queues.

    Per worker: pool size, tasks running and reserved, totals; per queue: messages
    waiting and consumers. Refreshed in place every --interval seconds; Ctrl-C quits.

    \b
    Examples:
      flowq -A tasks:app monitor
      flowq -A tasks:app monitor --once -Q reports
    """
    app = app_from(ctx)
    extra = split_list(queues) or []
    if once:
        click.echo(run_guarded(ctx, lambda: snapshot(app, timeout, extra)))
        return
    clear = CLEAR_SCREEN  # the first frame starts on a clean screen
    try:
        while True:
            started = time.monotonic()
            table = run_guarded(ctx, lambda: snapshot(app, timeout, extra))
            lines = [line + CLEAR_LINE for line in table.splitlines()]
            sys.stdout.write(clear + HOME + "\n".join(lines) + "\n" + CLEAR_BELOW)
            clear = ""
            sys.stdout.flush()
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        click.echo()


def snapshot(app: Any, timeout: float, queues: list[str] | None = None) -> str:
    """One table of the workers that answer, and of the queues they consume, the default
    queue and ``queues``."""
    from flowq.runtime.broker import describe

    stats: dict[str, Any] = app.control.inspect(timeout=timeout).stats() or {}
    consumers: dict[str, int] = {}
    for answer in stats.values():
        for name in answer.get("queues") or ():
            consumers[name] = consumers.get(name, 0) + 1
    for name in [app.conf.task_default_queue, *(queues or ())]:
        consumers.setdefault(name, 0)
    sizes = app.control.queue_sizes(sorted(consumers))
    head = f"flowq monitor  {time.strftime('%Y-%m-%d %H:%M:%S')}  broker {describe(app.conf)}"
    workers: list[tuple[str, ...]] = [
        ("WORKER", "POOL", "ACTIVE", "RESERVED", "SUCCEEDED", "FAILED", "UPTIME")]
    for node in sorted(stats):
        answer = stats[node]
        counts = answer.get("counts") or {}
        workers.append((node, str((answer.get("pool") or {}).get("concurrency", "?")),
                        str(answer.get("active", "?")), str(answer.get("reserved", "?")),
                        str(counts.get("succeeded", "?")), str(counts.get("failed", "?")),
                        _duration(answer.get("uptime"))))
    queue_rows: list[tuple[str, ...]] = [("QUEUE", "WAITING", "CONSUMERS")]
    queue_rows += [(name, "?" if sizes.get(name) is None else str(sizes[name]),
                    str(consumers[name])) for name in sorted(consumers)]
    lines: list[str] = [head, "", *_columns(workers)]
    if len(workers) == 1:
        lines.append(f"(no worker answered within {timeout:g}s)")
    return "\n".join(lines + [""] + _columns(queue_rows))


def _columns(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "?"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
