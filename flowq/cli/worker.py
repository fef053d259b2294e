"""``flowq worker``."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

import click

from flowq.cli import EXIT_USAGE, LOG_LEVEL, CliError, app_from, main, run_guarded, split_list

log = logging.getLogger("flowq.worker")
_SECONDS = click.FloatRange(min=0, min_open=True)


def parse_autoscale(ctx: click.Context, param: click.Parameter,
                    value: str | None) -> tuple[int, int] | None:
    """``MAX,MIN`` (either order, as Celery takes it) or ``MAX`` alone (MIN 1)."""
    if value is None:
        return None
    try:
        numbers = [int(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if not 1 <= len(numbers) <= 2:
        raise click.BadParameter(f"{value!r} is not MAX,MIN (two whole numbers, e.g. 10,3) "
                                 f"or MAX", param=param)
    high, low = max(numbers), min(numbers) if len(numbers) == 2 else 1
    if low < 1:
        raise click.BadParameter(f"MIN is {low}: a flowq pool always keeps at least one "
                                 f"process, so MIN must be 1 or more", param=param)
    return high, low


@main.command()
@click.option("-c", "--concurrency", type=int, help="Pool size (default: CPU count).")
@click.option("-n", "--hostname",
              help="Node name, e.g. w1@%h (default flowq@%h): %h is the host name, %n the "
                   "host name without its domain, %d the domain; a name without @ gets @%h.")
@click.option("-Q", "--queues", help="Comma-separated queues to consume.")
@click.option("-l", "--loglevel", type=LOG_LEVEL, default="INFO", show_default=True,
              help="Logging level.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"]),
              help="Execution pool.")
@click.option("--prefetch-multiplier", type=int, help="Messages reserved per process.")
@click.option("--autoscale", callback=parse_autoscale, metavar="MAX,MIN",
              help="Grow the pool up to MAX processes under load and shrink it back to MIN "
                   "when idle, as Celery does; it starts at MIN (default 1).")
@click.option("--max-tasks-per-child", type=int, help="Replace a child after N tasks.")
@click.option("--max-memory-per-child", type=click.IntRange(min=1), metavar="KIB",
              help="Replace a child after the task that took its resident memory over KIB "
                   "kibibytes (the task finishes first).")
@click.option("--time-limit", type=_SECONDS,
              help="Hard time limit of every task in seconds: the process running it is "
                   "killed and the task fails with TimeLimitExceeded.")
@click.option("--soft-time-limit", type=_SECONDS,
              help="Soft time limit of every task in seconds: SoftTimeLimitExceeded is "
                   "raised inside it.")
@click.option("--pidfile", help="Write the worker's pid to this file (%n: node name); refuse "
                                "to start if the pid in it is running; removed on exit.")
@click.option("-B", "--beat", "embed_beat", is_flag=True,
              help="Also run the periodic scheduler in this process (for development; "
                   "in production run one 'flowq beat').")
@click.option("-E", "--events", "send_events", is_flag=True,
              help="Send task and worker events (for flowq events / monitor).")
@click.option("--purge", "purge_first", is_flag=True,
              help="Delete the waiting messages of the worker's queues before starting.")
@click.option("--metrics-port", type=click.IntRange(0, 65535),
              help="Serve Prometheus metrics on this port (needs flowq[metrics]).")
@click.option("--metrics-host", help="Address the metrics endpoint binds (default "
                                     "127.0.0.1; 0.0.0.0 to be scraped from elsewhere).")
@click.option("-f", "--logfile", help="Log to this file instead of stderr; %n (node name), "
                                      "%h (host), %i (0: main process, 1..N: pool "
                                      "processes) and %I (-1..-N, nothing in the main "
                                      "process) are expanded, e.g. /var/log/flowq/%n%I.log.")
@click.option("--log-format", type=click.Choice(["text", "json"]),
              help="Log lines as text, or as one JSON object per line with the task's name, "
                   "id and root id (default: the worker_log_format setting, text).")
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, hostname: str | None,
           queues: str | None, loglevel: str, pool: str | None,
           prefetch_multiplier: int | None, autoscale: tuple[int, int] | None,
           max_tasks_per_child: int | None, max_memory_per_child: int | None,
           time_limit: float | None, soft_time_limit: float | None, pidfile: str | None,
           embed_beat: bool, send_events: bool, purge_first: bool,
           metrics_port: int | None, metrics_host: str | None, logfile: str | None,
           log_format: str | None) -> None:
    """Start a worker.

    \b
    Examples:
      flowq -A tasks:app worker
      flowq -A tasks:app worker -c 4 -n w1@%h -Q default,reports -l debug
      flowq -A tasks:app worker -B
      flowq -A tasks:app worker -E -n w2@%h --logfile /var/log/flowq/%n-%i.log
      flowq -A tasks:app worker --log-format json
      flowq worker -A tasks:app --autoscale 10,2 --max-memory-per-child 200000
      flowq worker -A tasks:app --time-limit 300 --soft-time-limit 240 --pidfile /run/flowq/%n.pid
      flowq -A tasks:app worker --metrics-port 9808
    """
    from flowq.runtime.beat import Beat, beat_thread
    from flowq.runtime.worker import Worker, expand_hostname, setup_logging

    if soft_time_limit and time_limit and soft_time_limit > time_limit:
        raise CliError(f"--soft-time-limit {soft_time_limit:g} is greater than --time-limit "
                       f"{time_limit:g}: the soft limit could never fire", EXIT_USAGE)
    app = app_from(ctx)
    if send_events:
        app.conf.worker_send_task_events = True
    if time_limit:
        app.conf.task_time_limit = time_limit
    if soft_time_limit:
        app.conf.task_soft_time_limit = soft_time_limit
    if metrics_port is not None:
        app.conf.worker_metrics_port = metrics_port
    if metrics_host is not None:
        app.conf.worker_metrics_host = metrics_host
    node = expand_hostname(hostname)
    log_format = log_format or app.conf.worker_log_format
    if logfile:
        from flowq.runtime.logfile import log_to_file

        run_guarded(ctx, lambda: log_to_file(logfile, node, loglevel, log_format))
    else:
        run_guarded(ctx, lambda: setup_logging(loglevel, log_format))
    _check_name(app, node)
    if purge_first:
        _purge(ctx, app, split_list(queues) or [app.conf.task_default_queue])
    if autoscale and concurrency:
        log.warning("-c %d is ignored: --autoscale %d,%d sizes the pool", concurrency,
                    *autoscale)
    scheduler = run_guarded(ctx, lambda: Beat(app)) if embed_beat else None
    instance = run_guarded(ctx, lambda: Worker(
        app, concurrency=concurrency, queues=split_list(queues), hostname=node, pool=pool,
        prefetch_multiplier=prefetch_multiplier, max_tasks_per_child=max_tasks_per_child,
        app_path=ctx.obj["app_path"], autoscale=autoscale,
        max_memory_per_child=max_memory_per_child, pidfile=pidfile))
    with beat_thread(scheduler) if scheduler else contextlib.nullcontext():
        code = run_guarded(ctx, instance.run)
    sys.exit(code)


def _check_name(app: Any, node: str) -> None:
    """Warn when a running worker already answers to ``node``: remote control and
    monitoring tell workers apart by node name only."""
    if app.control.name_taken(node):
        log.warning("A worker named %s is already running (it answered a ping): commands "
                    "and events will mix up the two; give each worker a unique name with "
                    "-n, e.g. -n w2@%%h", node)


def _purge(ctx: click.Context, app: Any, queues: list[str]) -> None:
    removed = run_guarded(ctx, lambda: app.control.purge_each(queues))
    for name, count in removed.items():
        log.info("Purged %d message(s) from %s", count, name)
