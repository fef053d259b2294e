"""``flowq dashboard``: serve the web dashboard."""

from __future__ import annotations

import click

from flowq.cli import EXIT_FAILURE, EXIT_USAGE, CliError, app_from, main
from flowq.cli.workflows import Duration


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --token or --basic-auth.")
@click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True)
@click.option("--token", envvar="FLOWQ_DASHBOARD_TOKEN",
              help="Require this token (Authorization: Bearer, or as the basic-auth "
                   "password); also read from FLOWQ_DASHBOARD_TOKEN.")
@click.option("--basic-auth", "basic", envvar="FLOWQ_DASHBOARD_AUTH", metavar="USER:PASSWORD",
              help="Require HTTP basic auth; also read from FLOWQ_DASHBOARD_AUTH.")
@click.option("--enable-actions", is_flag=True,
              help="Allow revoking a task or a whole workflow from the pages.")
@click.option("--stuck-after", type=Duration(), default="10m", show_default=True,
              help="Mark a workflow stuck after this long without progress.")
@click.option("--refresh", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between two looks at the workers and queues.")
@click.pass_context
def dashboard(ctx: click.Context, host: str, port: int, token: str | None, basic: str | None,
              enable_actions: bool, stuck_after: float, refresh: float) -> None:
    """Serve the web dashboard: workers, queues, recent and stuck workflows, and each
    workflow drawn with its nodes' live states. Read-only unless --enable-actions.

    \b
    Examples:
      flowq -A tasks:app dashboard
      flowq -A tasks:app dashboard --port 8080 --enable-actions
      FLOWQ_DASHBOARD_TOKEN=s3cret flowq -A tasks:app dashboard --host 0.0.0.0
    """
    try:
        from flowq.dashboard import server
        from flowq.dashboard.auth import Credentials, check_exposure
        from flowq.dashboard.monitor import Monitor
    except ImportError as exc:
        raise CliError(f"the dashboard needs its extra: pip install 'flowq[dashboard]' "
                       f"({exc})", EXIT_FAILURE) from None
    from flowq.exceptions import ConfigurationError

    app = app_from(ctx)
    try:
        credentials = Credentials(token, basic)
        check_exposure(host, credentials)
    except ConfigurationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    monitor = Monitor(app, interval=refresh, stuck_after=stuck_after,
                      stuck_every=max(refresh, min(15.0, stuck_after / 4)))
    mode = "actions enabled" if enable_actions else "read-only"
    guard = "authentication required" if credentials.required else "no authentication"
    click.echo(f"flowq dashboard on http://{host}:{port}/ ({mode}, {guard})", err=True)
    server.serve(app, host, port, credentials=credentials, actions=enable_actions,
                 monitor=monitor)
