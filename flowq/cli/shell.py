"""``flowq shell``: a Python shell with the app, its tasks and the canvas names at hand."""

from __future__ import annotations

import code
from typing import Any

import click

from flowq.cli import EXIT_USAGE, CliError, app_from, main

#: flowq names every shell has, besides the app and its tasks.
BUILTINS = ("chain", "group", "chord", "signature", "fanout", "states")


def namespace(app: Any) -> dict[str, Any]:
    """``app``, ``tasks`` (the registry), the canvas names, and each task under its
    function's name (``add`` for ``tasks.add``) unless that name is taken."""
    import flowq

    names: dict[str, Any] = {name: getattr(flowq, name) for name in BUILTINS}
    names.update(app=app, tasks=app.tasks, AsyncResult=app.AsyncResult)
    for name, task in sorted(app.tasks.items()):
        short = name.rsplit(".", 1)[-1]
        if not name.startswith("flowq.") and short not in names:
            names[short] = task
    return names


def banner(app: Any, names: dict[str, Any], app_path: str | None) -> str:
    from flowq.runtime.broker import describe

    tasks = sorted(short for short, value in names.items() if value in app.tasks.values())
    return (f"flowq shell: app {app_path or app.main} on {describe(app.conf)}\n"
            f"  tasks: {', '.join(tasks) or '(none)'}\n"
            f"  also: app, tasks, AsyncResult, {', '.join(BUILTINS)}")


@main.command()
@click.option("--ipython/--python", "use_ipython", default=None,
              help="IPython (the default when it is installed) or the plain Python shell.")
@click.pass_context
def shell(ctx: click.Context, use_ipython: bool | None) -> None:
    """Start a Python shell with the app, its tasks (by function name) and chain, group,
    chord, signature, fanout and states imported. It reads standard input, so it also
    runs piped code.

    \b
    Examples:
      flowq -A tasks:app shell
      echo 'print(add.delay(2, 2).get(timeout=10))' | flowq -A tasks:app shell --python
    """
    app = app_from(ctx)
    names = namespace(app)
    text = banner(app, names, ctx.obj.get("app_path"))
    if use_ipython is not False:
        try:
            import IPython
        except ImportError:
            if use_ipython:
                raise CliError("--ipython: IPython is not installed (pip install ipython), "
                               "or use --python", EXIT_USAGE) from None
        else:
            click.echo(text, err=True)
            IPython.start_ipython(argv=[], user_ns=names)
            return
    code.interact(banner=text, local=names, exitmsg="")
