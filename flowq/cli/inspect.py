"""``flowq inspect``, ``flowq control`` and ``flowq status``: remote control of workers.

Commands are broadcast over the broker; replies are collected for ``--timeout`` seconds.
``-d w1@host,w2@host`` sends to those nodes only. Output is one block per node (or one
JSON object with ``--json``); no reply at all exits with EXIT_UNAVAILABLE (69).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from flowq.cli import (
    EXIT_FAILURE,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    CliError,
    app_from,
    main,
    run_guarded,
    split_list,
)

F = TypeVar("F", bound=Callable[..., Any])

INSPECT_METHODS = ("active", "reserved", "scheduled", "registered", "stats", "revoked",
                   "active_queues", "conf", "ping", "query_task", "clock", "report")


def targeting(fn: F) -> F:
    """The options every remote command takes: destination, timeout, JSON output."""
    fn = click.option("--json", "as_json", is_flag=True,
                      help="Print the replies as one JSON object.")(fn)
    fn = click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True),
                      default=1.0, show_default=True,
                      help="Seconds to wait for replies.")(fn)
    fn = click.option("-d", "--destination",
                      help="Comma-separated node names (default: every worker).")(fn)
    return fn


# -- inspect ---------------------------------------------------------------------------------


@main.command()
@click.argument("method", type=click.Choice(INSPECT_METHODS), metavar="METHOD")
@click.argument("task_ids", nargs=-1, metavar="[TASK_ID]...")
@targeting
@click.pass_context
def inspect(ctx: click.Context, method: str, task_ids: tuple[str, ...],
            destination: str | None, timeout: float, as_json: bool) -> None:
    """Ask running workers about their tasks, queues, settings or statistics.

    METHOD is one of: active (running now), reserved (taken, not started), scheduled,
    registered (task names), stats, revoked, active_queues, conf (settings), ping,
    query_task TASK_ID... (which of these tasks each worker runs or holds), clock (the
    worker's event clock and time), report (versions and settings, as flowq report).

    \b
    Examples:
      flowq -A tasks:app inspect active
      flowq -A tasks:app inspect stats -d w1@myhost -t 3
      flowq -A tasks:app inspect registered --json
      flowq -A tasks:app inspect query_task 5f0c2d9e-... 7a1b...
      flowq -A tasks:app inspect report -d w1@myhost
    """
    if (method == "query_task") != bool(task_ids):
        raise CliError("inspect query_task takes one or more task ids" if not task_ids else
                       f"inspect {method} takes no task ids (only query_task does)", EXIT_USAGE)
    app = app_from(ctx)
    asker = app.control.inspect(split_list(destination), timeout)
    replies = run_guarded(ctx, lambda: getattr(asker, method)(*task_ids)) or {}
    _require_replies(app, replies, timeout)
    _show(replies, as_json, {"query_task": _describe_queried,
                             "clock": _describe_clock}.get(method, _describe))


# -- status ----------------------------------------------------------------------------------


@main.command()
@targeting
@click.pass_context
def status(ctx: click.Context, destination: str | None, timeout: float, as_json: bool) -> None:
    """List the workers that answer a ping.

    \b
    Examples:
      flowq -A tasks:app status
      flowq -A tasks:app status -t 3
    """
    app = app_from(ctx)
    replies = run_guarded(ctx, lambda: app.control.inspect(split_list(destination),
                                                            timeout).ping()) or {}
    _require_replies(app, replies, timeout)
    if as_json:
        click.echo(json.dumps(replies, sort_keys=True))
        return
    for node in sorted(replies):
        click.echo(f"{node}: OK")
    click.echo(f"\n{len(replies)} node{'s' if len(replies) != 1 else ''} online.")


# -- control ---------------------------------------------------------------------------------


@main.group()
def control() -> None:
    """Change running workers: revoke tasks, limits, queues consumed, pool size, events.

    \b
    Examples:
      flowq -A tasks:app control revoke 5f0c2d9e-...
      flowq -A tasks:app control terminate 5f0c2d9e-... --signal SIGKILL
      flowq -A tasks:app control rate_limit tasks.add 10/m
      flowq -A tasks:app control time_limit tasks.crunch 50 60
      flowq -A tasks:app control add_consumer reports -d w1@myhost
      flowq -A tasks:app control pool_grow 2
      flowq -A tasks:app control autoscale 10 3
      flowq -A tasks:app control enable_events
      flowq -A tasks:app control shutdown -d w1@myhost
    """


def _targets(destination: str | None, timeout: float) -> dict[str, Any]:
    return {"destination": split_list(destination), "timeout": timeout}


@control.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--terminate", is_flag=True, help="Also kill the processes running them.")
@click.option("--signal", "signal_name", default="SIGTERM", show_default=True,
              help="Signal for --terminate.")
@targeting
@click.pass_context
def revoke(ctx: click.Context, task_ids: tuple[str, ...], terminate: bool, signal_name: str,
           destination: str | None, timeout: float, as_json: bool) -> None:
    """Revoke tasks (or whole workflows, by root id): they will not run.

    The revocation is stored in the result backend, so it also reaches workers that are
    busy or not started yet; workers that answer act at once.

    \b
    Examples:
      flowq -A tasks:app control revoke 5f0c2d9e-... 7a1b...
      flowq -A tasks:app control revoke 5f0c2d9e-... --terminate
    """
    _revoke(ctx, list(task_ids), terminate, signal_name, destination, timeout, as_json)


@control.command()
@click.argument("task_ids", nargs=-1, required=True)
@click.option("--signal", "signal_name", default="SIGTERM", show_default=True,
              help="Signal sent to the processes running them.")
@targeting
@click.pass_context
def terminate(ctx: click.Context, task_ids: tuple[str, ...], signal_name: str,
              destination: str | None, timeout: float, as_json: bool) -> None:
    """Revoke tasks and kill the processes running them now.

    \b
    Example:
      flowq -A tasks:app control terminate 5f0c2d9e-... --signal SIGKILL
    """
    _revoke(ctx, list(task_ids), True, signal_name, destination, timeout, as_json)


def _revoke(ctx: click.Context, task_ids: list[str], terminate: bool, signal_name: str,
            destination: str | None, timeout: float, as_json: bool) -> None:
    from flowq.runtime.remote import signal_number

    try:
        signal_number(signal_name)
    except Exception as exc:  # noqa: BLE001 - ConfigurationError naming the signal
        raise CliError(str(exc), EXIT_USAGE) from None
    app = app_from(ctx)
    replies = run_guarded(ctx, lambda: app.control.revoke(
        task_ids, terminate=terminate, signal=signal_name, reply=True,
        **_targets(destination, timeout)))
    merged = _merge(replies)
    if as_json:
        click.echo(json.dumps(merged, sort_keys=True))
        return
    click.echo(f"revoked {len(task_ids)} id(s) (stored in the result backend)")
    if not merged:
        click.echo("no worker replied: they apply it when they receive the task")
    _show(merged, False, _describe)


@control.command("rate_limit")
@click.argument("task_name")
@click.argument("rate")
@targeting
@click.pass_context
def rate_limit(ctx: click.Context, task_name: str, rate: str, destination: str | None,
               timeout: float, as_json: bool) -> None:
    """Set TASK_NAME's rate limit in each worker: '10/s', '100/m', '1000/h'; 0 or none
    removes it.

    \b
    Example:
      flowq -A tasks:app control rate_limit tasks.add 10/m
    """
    from flowq.runtime.ratelimit import parse_rate

    value: str | None = None if rate.lower() in ("0", "none", "") else rate
    try:
        parse_rate(value)
    except Exception as exc:  # noqa: BLE001 - ConfigurationError with the format
        raise CliError(str(exc), EXIT_USAGE) from None
    _command(ctx, "rate_limit", as_json, timeout, destination, task_name=task_name,
             rate_limit=value)


@control.command("time_limit")
@click.argument("task_name")
@click.argument("soft", type=float)
@click.argument("hard", type=float, required=False)
@targeting
@click.pass_context
def time_limit(ctx: click.Context, task_name: str, soft: float, hard: float | None,
               destination: str | None, timeout: float, as_json: bool) -> None:
    """Set TASK_NAME's soft (and hard) time limit in seconds in each worker; 0 removes one.

    \b
    Example:
      flowq -A tasks:app control time_limit tasks.crunch 50 60
    """
    _command(ctx, "time_limit", as_json, timeout, destination, task_name=task_name,
             soft=soft or None, hard=hard or None)


@control.command("add_consumer")
@click.argument("queue")
@targeting
@click.pass_context
def add_consumer(ctx: click.Context, queue: str, destination: str | None, timeout: float,
                 as_json: bool) -> None:
    """Make workers consume from QUEUE too.

    \b
    Example:
      flowq -A tasks:app control add_consumer reports -d w1@myhost
    """
    _command(ctx, "add_consumer", as_json, timeout, destination, queue=queue)


@control.command("cancel_consumer")
@click.argument("queue")
@targeting
@click.pass_context
def cancel_consumer(ctx: click.Context, queue: str, destination: str | None, timeout: float,
                    as_json: bool) -> None:
    """Make workers stop consuming from QUEUE.

    \b
    Example:
      flowq -A tasks:app control cancel_consumer reports
    """
    _command(ctx, "cancel_consumer", as_json, timeout, destination, queue=queue)


@control.command("pool_grow")
@click.argument("n", type=click.IntRange(min=1), default=1)
@targeting
@click.pass_context
def pool_grow(ctx: click.Context, n: int, destination: str | None, timeout: float,
              as_json: bool) -> None:
    """Add N processes to each worker's pool.

    \b
    Example:
      flowq -A tasks:app control pool_grow 2 -d w1@myhost
    """
    _command(ctx, "pool_grow", as_json, timeout, destination, n=n)


@control.command("pool_shrink")
@click.argument("n", type=click.IntRange(min=1), default=1)
@targeting
@click.pass_context
def pool_shrink(ctx: click.Context, n: int, destination: str | None, timeout: float,
                as_json: bool) -> None:
    """Remove N processes from each worker's pool (one always stays).

    \b
    Example:
      flowq -A tasks:app control pool_shrink 1
    """
    _command(ctx, "pool_shrink", as_json, timeout, destination, n=n)


@control.command("autoscale")
@click.argument("max_concurrency", metavar="MAX", type=click.IntRange(min=1))
@click.argument("min_concurrency", metavar="MIN", type=click.IntRange(min=1))
@targeting
@click.pass_context
def autoscale(ctx: click.Context, max_concurrency: int, min_concurrency: int,
              destination: str | None, timeout: float, as_json: bool) -> None:
    """Set the bounds of workers started with --autoscale: at most MAX processes under
    load, at least MIN when idle. The pool moves into them at once.

    \b
    Example:
      flowq -A tasks:app control autoscale 10 3 -d w1@myhost
    """
    if min_concurrency > max_concurrency:
        raise CliError(f"MAX ({max_concurrency}) is less than MIN ({min_concurrency})",
                       EXIT_USAGE)
    _command(ctx, "autoscale", as_json, timeout, destination, max_concurrency=max_concurrency,
             min_concurrency=min_concurrency)


@control.command("enable_events")
@targeting
@click.pass_context
def enable_events(ctx: click.Context, destination: str | None, timeout: float,
                  as_json: bool) -> None:
    """Make workers send events (as if started with -E), for flowq events and monitors.

    \b
    Example:
      flowq -A tasks:app control enable_events
    """
    _command(ctx, "enable_events", as_json, timeout, destination)


@control.command("disable_events")
@targeting
@click.pass_context
def disable_events(ctx: click.Context, destination: str | None, timeout: float,
                   as_json: bool) -> None:
    """Make workers stop sending events.

    \b
    Example:
      flowq -A tasks:app control disable_events -d w1@myhost
    """
    _command(ctx, "disable_events", as_json, timeout, destination)


@control.command()
@targeting
@click.pass_context
def heartbeat(ctx: click.Context, destination: str | None, timeout: float,
              as_json: bool) -> None:
    """Make workers send a worker-heartbeat event now (they must send events).

    \b
    Example:
      flowq -A tasks:app control heartbeat -d w1@myhost
    """
    _command(ctx, "heartbeat", as_json, timeout, destination)


@control.command()
@targeting
@click.pass_context
def shutdown(ctx: click.Context, destination: str | None, timeout: float, as_json: bool) -> None:
    """Warm-shut-down workers: they finish running tasks, return the rest, and exit.

    \b
    Examples:
      flowq -A tasks:app control shutdown -d w1@myhost
      flowq -A tasks:app control shutdown            # every worker!
    """
    _command(ctx, "shutdown", as_json, timeout, destination)


def _command(ctx: click.Context, command: str, as_json: bool, timeout: float,
             destination: str | None, **arguments: Any) -> None:
    app = app_from(ctx)
    replies = _merge(run_guarded(ctx, lambda: app.control.broadcast(
        command, arguments, split_list(destination), reply=True, timeout=timeout)))
    _require_replies(app, replies, timeout)
    _show(replies, as_json, _describe)
    if any(isinstance(r, dict) and "error" in r for r in replies.values()):
        sys.exit(EXIT_FAILURE)


# -- output ----------------------------------------------------------------------------------


def _merge(replies: list[dict[str, Any]] | None) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for reply in replies or ():
        merged.update(reply)
    return merged


def _require_replies(app: Any, replies: dict[str, Any], timeout: float) -> None:
    if not replies:
        from flowq.runtime.broker import describe

        raise CliError(f"no worker replied within {timeout:g}s (broker {describe(app.conf)}); "
                       f"are workers running? check -d and -t", EXIT_UNAVAILABLE)


def _show(replies: dict[str, Any], as_json: bool,
          describe: Callable[[Any], list[str]]) -> None:
    if as_json:
        click.echo(json.dumps(replies, sort_keys=True, default=repr))
        return
    for node in sorted(replies):
        first, *rest = describe(replies[node])
        click.echo(f"{node}: {first}".rstrip())
        for line in rest:
            click.echo(f"  {line}")


def _describe(answer: Any) -> list[str]:
    """A node's answer as lines: a summary first, then one line per item."""
    if isinstance(answer, dict) and set(answer) == {"ok"}:
        first, *rest = str(answer["ok"]).splitlines() or [""]
        return [f"OK {first}", *rest]
    if isinstance(answer, dict) and "error" in answer:
        return [f"ERROR {answer['error']}"]
    if isinstance(answer, list):
        if answer and all(isinstance(item, dict) and "id" in item for item in answer):
            return [f"{len(answer)} task(s)", *(_task_line(item) for item in answer)]
        if answer and all(isinstance(item, dict) and "name" in item for item in answer):
            return [f"{len(answer)} item(s)", *(str(item["name"]) for item in answer)]
        return [f"{len(answer)} item(s)", *(str(item) for item in answer)]
    if isinstance(answer, dict):
        return ["", *(f"{key}: {value}" for key, value in _flatten(answer))]
    return [str(answer)]


def _describe_queried(answer: Any) -> list[str]:
    """``inspect query_task``: the asked tasks a node holds, and in which state."""
    held = answer if isinstance(answer, dict) else {}
    return [f"{len(held)} of the task(s)",
            *(f"{state} {_task_line(item)}" for state, item in held.values())]


def _describe_clock(answer: Any) -> list[str]:
    """``inspect clock``: the node's event clock, its time and how far it is from ours."""
    import datetime
    import time

    if not isinstance(answer, dict) or not isinstance(answer.get("time"), (int, float)):
        return _describe(answer)
    moment = datetime.datetime.fromtimestamp(answer["time"], datetime.timezone.utc)
    return [f"clock {answer.get('clock')}, time {moment.isoformat(timespec='milliseconds')} "
            f"({answer['time'] - time.time():+.3f}s from here, reply delay included)"]


def _task_line(item: dict[str, Any]) -> str:
    import time

    line = f"{item.get('name')}[{item.get('id')}]"
    if item.get("root_id") and item.get("root_id") != item.get("id"):
        line += f" root={item['root_id']}"
    if item.get("queue"):
        line += f" queue={item['queue']}"
    if isinstance(item.get("time_start"), (int, float)):
        line += f" running {time.time() - item['time_start']:.1f}s"
    return line


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for key in sorted(data):
        value = data[key]
        if isinstance(value, dict) and value:
            rows += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, (list, tuple)):
            rows.append((prefix + str(key), ", ".join(str(v) for v in value)))
        else:
            rows.append((prefix + str(key), str(value)))
    return rows
