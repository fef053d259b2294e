"""``flowq resume``: run a failed workflow again from where it failed."""

from __future__ import annotations

import click

from flowq.cli import app_from, main, run_guarded


@main.command()
@click.argument("task_id")
@click.pass_context
def resume(ctx: click.Context, task_id: str) -> None:
    """Resume the finished-with-failure workflow that TASK_ID (its root id, or any of its
    tasks' ids) belongs to: the tasks that failed or never ran run again, the results of
    those that succeeded are kept. Refused (exit 1) while the workflow still runs, once it
    succeeded, or if it was revoked.

    \b
    Example:
      flowq -A tasks:app resume 5f0c2d9e-1b7a-4c1e-9a57-0d6c2f0e8b11
      flowq -A tasks:app graph 5f0c2d9e-1b7a-4c1e-9a57-0d6c2f0e8b11 --watch
    """
    from flowq.runtime.resume import resume as resume_workflow

    app = app_from(ctx)
    done = run_guarded(ctx, lambda: resume_workflow(app, task_id))
    click.echo(f"resumed workflow {done.root_id} (resume #{done.resumes}): {done.rerun} "
               f"task(s) to run again, {done.reused} result(s) kept, {done.sent} sent now")
