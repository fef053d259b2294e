"""``flowq worker``."""

from __future__ import annotations

import sys

import click

from flowq.cli import app_from, main, run_guarded, split_list


@main.command()
@click.option("-c", "--concurrency", type=int, help="Pool size (default: CPU count).")
@click.option("-n", "--hostname", help="Node name, e.g. worker1@%h.")
@click.option("-Q", "--queues", help="Comma-separated queues to consume.")
@click.option("-l", "--loglevel", default="INFO", show_default=True, help="Logging level.")
@click.option("-P", "--pool", type=click.Choice(["prefork", "threads", "solo"]),
              help="Execution pool.")
@click.option("--prefetch-multiplier", type=int, help="Messages reserved per process.")
@click.option("--max-tasks-per-child", type=int, help="Replace a child after N tasks.")
@click.pass_context
def worker(ctx: click.Context, concurrency: int | None, hostname: str | None,
           queues: str | None, loglevel: str, pool: str | None,
           prefetch_multiplier: int | None, max_tasks_per_child: int | None) -> None:
    """Start a worker.

    \b
    Examples:
      flowq -A tasks:app worker
      flowq -A tasks:app worker -c 4 -n w1@%h -Q default,reports -l debug
    """
    from flowq.runtime.worker import Worker, setup_logging

    app = app_from(ctx)
    setup_logging(loglevel)
    instance = Worker(app, concurrency=concurrency, queues=split_list(queues), hostname=hostname,
                      pool=pool, prefetch_multiplier=prefetch_multiplier,
                      max_tasks_per_child=max_tasks_per_child, app_path=ctx.obj["app_path"])
    code = run_guarded(ctx, instance.run)
    sys.exit(code)
