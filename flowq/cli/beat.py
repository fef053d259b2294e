"""``flowq beat``: the periodic scheduler."""

from __future__ import annotations

import signal
import sys
from typing import Any

import click

from flowq.cli import EXIT_OK, LOG_LEVEL, app_from, main, run_guarded

_POSITIVE = click.FloatRange(min=0, min_open=True)


@main.command()
@click.option("-l", "--loglevel", type=LOG_LEVEL, default="INFO", show_default=True,
              help="Logging level.")
@click.option("--lease-ttl", type=_POSITIVE, default=None,
              help="Seconds the scheduling lease lasts unrenewed: how long a standby beat "
                   "waits before taking over from one that died (default: the "
                   "beat_lease_ttl setting, 10).")
@click.option("--max-interval", type=_POSITIVE,
              help="Longest sleep between two checks in seconds (default: the "
                   "beat_max_loop_interval setting).")
@click.pass_context
def beat(ctx: click.Context, loglevel: str, lease_ttl: float | None,
         max_interval: float | None) -> None:
    """Send the entries of beat_schedule when they are due.

    Run one per deployment; a second one waits as a standby and takes over when the
    first dies. SIGTERM or Ctrl-C stops it and hands the lease over at once.

    \b
    Examples:
      flowq -A tasks:app beat
      flowq -A tasks:app beat --lease-ttl 5 -l debug
    """
    from flowq.runtime.beat import Beat
    from flowq.runtime.worker import setup_logging

    app = app_from(ctx)
    setup_logging(loglevel)
    scheduler = run_guarded(
        ctx, lambda: Beat(app, lease_ttl=lease_ttl, max_interval=max_interval))

    def on_stop_signal(signum: int, frame: Any) -> None:
        scheduler.stop()

    signal.signal(signal.SIGTERM, on_stop_signal)
    signal.signal(signal.SIGINT, on_stop_signal)
    try:
        run_guarded(ctx, scheduler.run)
    finally:
        app.close()
    sys.exit(EXIT_OK)
