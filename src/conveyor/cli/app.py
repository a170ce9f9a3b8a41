"""The ``conveyor`` command: thin — parse options, then call the pieces that do the work.

``serve``/``server``/``worker`` run processes (``cli.serving``); the task, queue, schedule,
put, deploy and deployment commands talk to a gateway through ``conveyor.sdk.client.Client``
(``cli.tasks``, ``cli.queues``, ``cli.schedules``, ``cli.secrets``, ``cli.deployments``);
token, workspace and signing-key work on the store (``cli.admin``), as do ``secret keygen``
and ``secret rotate-key``. Every failure is one ``error: …`` line on stderr and a non-zero
exit code.
"""

from __future__ import annotations

import sys

import typer

from conveyor.cli import render
from conveyor.cli.admin import signing_key_app, token_app, workspace_app
from conveyor.cli.deployments import deployment_app
from conveyor.cli.queues import deploy_cmd, queue_app
from conveyor.cli.report import err
from conveyor.cli.schedules import schedule_app
from conveyor.cli.secrets import secret_app
from conveyor.cli.serving import serve_cmd, server_cmd, worker_cmd
from conveyor.cli.tasks import put_cmd, task_app

app = typer.Typer(
    help="Conveyor: a self-hosted task queue for Python.\n\n"
    "Example: conveyor serve app.py:resize, then in another terminal:"
    ' conveyor put resize \'{"path": "a.png"}\' --wait',
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# ``--help`` lists commands in this order, then the groups in theirs.
app.command("serve")(serve_cmd)
app.command("server")(server_cmd)
app.command("worker")(worker_cmd)
app.command("deploy")(deploy_cmd)
app.command("put")(put_cmd)
app.add_typer(token_app, name="token")
app.add_typer(workspace_app, name="workspace")
app.add_typer(task_app, name="task")
app.add_typer(queue_app, name="queue")
app.add_typer(secret_app, name="secret")
app.add_typer(deployment_app, name="deployment")
app.add_typer(schedule_app, name="schedule")
app.add_typer(signing_key_app, name="signing-key")


def main() -> None:
    """Entry point: usage errors, too, are one ``error:`` line (exit code 2)."""
    try:
        code = app(standalone_mode=False)
    except Exception as exc:
        # Click's usage errors (typer may vendor click, so they are recognised by shape).
        exit_code = getattr(exc, "exit_code", None)
        if not isinstance(exit_code, int) or not hasattr(exc, "format_message"):
            raise
        if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            render.print_error(err, str(exc.format_message()) + hint)
        code = exit_code
    sys.exit(code if isinstance(code, int) else 0)
