"""The ``conveyor`` command: thin — parse options, then call the pieces that do the work.

``serve``/``server``/``worker`` run processes (``serve.py``); the task, queue, put and deploy
commands talk to a gateway through ``conveyor.sdk.client.Client`` and show answers with
``cli_render``. Every failure is one ``error: …`` line on stderr and a non-zero exit code.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Coroutine, Iterator
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
import typer
import uvloop
from rich.console import Console

from conveyor.cli import render
from conveyor.cli.options import (
    MaxBodyBytesOpt,
    OutputUrlTtlOpt,
    PublicUrlOpt,
    RetryAfterOpt,
    SsePingOpt,
    gateway_settings,
)
from conveyor.errors import ConveyorError, HTTPError, WaitTimeout
from conveyor.sdk.bundle import IGNORE_FILE, make_bundle
from conveyor.sdk.client import (
    DEFAULT_URL,
    ENV_TOKEN,
    ENV_URL,
    Client,
    ConveyorWarning,
    TaskFilters,
    enqueue_call,
    load_settings,
)
from conveyor.tasks import TaskStatus

if TYPE_CHECKING:
    from conveyor.server.run import ServeInfo

# The gateway, agent and store modules are imported by the commands that run them: the
# client commands start several times faster without them.

T = TypeVar("T")

DEFAULT_STORE = "sqlite:///.conveyor/conveyor.db"
#: Exit codes of the waiting commands.
EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2

app = typer.Typer(
    help="Conveyor: a self-hosted task queue for Python.\n\n"
    "Example: conveyor serve app.py:resize, then in another terminal:"
    ' conveyor put resize \'{"path": "a.png"}\' --wait',
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
token_app = typer.Typer(
    help="Manage API tokens.\n\nExample: conveyor token create --workspace acme",
    no_args_is_help=True,
)
workspace_app = typer.Typer(
    help="Manage workspaces.\n\nExample: conveyor workspace create acme", no_args_is_help=True
)
task_app = typer.Typer(
    help="List, inspect, stop and wait for tasks.\n\nExample: conveyor task list --status running",
    no_args_is_help=True,
)
queue_app = typer.Typer(
    help="Inspect task queues.\n\nExample: conveyor queue list", no_args_is_help=True
)
signing_key_app = typer.Typer(
    help="Manage the key that signs output links.\n\nExample: conveyor signing-key rotate",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")
app.add_typer(workspace_app, name="workspace")
app.add_typer(task_app, name="task")
app.add_typer(queue_app, name="queue")
app.add_typer(signing_key_app, name="signing-key")

out = Console()
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 200  # whole table rows for pipes (grep, less), not 80 columns
err = Console(stderr=True)

StoreOpt = Annotated[
    str,
    typer.Option(
        "--store", envvar="CONVEYOR_STORE", help="Store URL: sqlite:///path or postgresql://…"
    ),
]
HostOpt = Annotated[
    str, typer.Option("--host", envvar="CONVEYOR_HOST", help="Address to listen on.")
]
PortOpt = Annotated[int, typer.Option("--port", envvar="CONVEYOR_PORT", help="Port to listen on.")]
UrlOpt = Annotated[
    str | None,
    typer.Option(
        "--url",
        envvar=ENV_URL,
        help=f"Gateway URL; else url in ~/.conveyor/config.toml, else {DEFAULT_URL}.",
        show_default=False,
    ),
]
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=ENV_TOKEN,
        help="API token; else token in ~/.conveyor/config.toml.",
        show_default=False,
    ),
]
TimeoutOpt = Annotated[
    float | None,
    typer.Option("--timeout", min=0, help="Give up after this many seconds (exit code 2)."),
]


class ListFormat(StrEnum):
    table = "table"
    json = "json"


class TaskFormat(StrEnum):
    panel = "panel"
    json = "json"


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
    )


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Turn a failure into one ``error:`` line and an exit code: 2 for a wait that ran out."""
    try:
        yield
    except WaitTimeout as exc:
        render.print_error(err, str(exc))
        raise typer.Exit(EXIT_TIMEOUT) from None
    except (ConveyorError, OSError) as exc:
        render.print_error(err, str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop; a conveyor error becomes one line on stderr and exit code 1."""
    with _reported():
        return uvloop.run(coro)
    raise AssertionError("unreachable: _reported exits on errors")


def _client(url: str | None, token: str | None) -> Client:
    """Options and their variables first, then ~/.conveyor/config.toml, then the default URL."""
    return Client(*load_settings({ENV_URL: url or "", ENV_TOKEN: token or ""}))


def _statuses(text: str) -> list[str]:
    """``running,Error`` → ``["RUNNING", "FAILED"]``, refusing unknown names before any request."""
    try:
        statuses = [TaskStatus.parse(part).value for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--status") from None
    return list(dict.fromkeys(statuses))


def _ids(task_ids: list[str], nothing: str) -> list[str]:
    """The ids given, or the whitespace-separated ids on stdin for ``-``; duplicates once.

    An empty stdin (a filter that matched no task) is no failure: ``nothing`` is said on
    stderr and the command exits 0.
    """
    ids = sys.stdin.read().split() if task_ids == ["-"] else task_ids
    if not ids:
        err.print(nothing, highlight=False)
        raise typer.Exit(EXIT_OK)
    return list(dict.fromkeys(ids))


def _known_queue(client: Client, name: str) -> None:
    """Refuse a queue name the workspace does not have, naming those it has."""
    try:
        client.queue(name)
    except HTTPError as exc:
        if exc.status_code != 404:
            raise
        names = ", ".join(q["name"] for q in client.queues())
        known = f"known queues: {names}" if names else "no queue is deployed yet"
        raise ConveyorError(f"unknown queue {name!r}; {known}") from None


@app.command("serve")
def serve_cmd(
    targets: Annotated[
        list[str], typer.Argument(help="Task queues as FILE:FUNC.", metavar="FILE:FUNC...")
    ],
    store: StoreOpt = DEFAULT_STORE,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="CONVEYOR_TOKEN", help="Fix the default workspace's token."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log containers and tasks.")
    ] = False,
    max_body_bytes: MaxBodyBytesOpt = None,
    public_url: PublicUrlOpt = None,
    output_url_ttl_s: OutputUrlTtlOpt = None,
    retry_after_s: RetryAfterOpt = None,
    sse_ping_s: SsePingOpt = None,
) -> None:
    """Run the gateway, an agent and the embedded store in one process (development).

    Example: conveyor serve examples/app.py:square
    """
    _logging(verbose)

    def ready(info: ServeInfo) -> None:
        out.print(f"[bold green]conveyor[/bold green] serving on [bold]{info.url}[/bold]")
        for queue in info.queues:
            stub = queue.stub
            out.print(f"  queue [cyan]{stub.name}[/cyan] v{stub.version}  stub {stub.id}")
        out.print(f"  token  {info.token}")
        if info.queues:
            first = info.queues[0]
            queue_url = f"{info.url}/taskqueue/{first.stub.name}"
            body = orjson.dumps(first.example_body).decode()
            out.print("  try:", highlight=False)
            out.print(
                "    " + render.curl_line(queue_url, info.token, body),
                highlight=False,
                soft_wrap=True,
                markup=False,
            )
        out.print("  Ctrl-C stops.", highlight=False)

    settings = gateway_settings(
        max_body_bytes=max_body_bytes,
        public_url=public_url,
        output_url_ttl_s=output_url_ttl_s,
        retry_after_s=retry_after_s,
        sse_ping_s=sse_ping_s,
    )
    from conveyor.server.run import serve

    _run(
        serve(
            targets,
            store_url=store,
            host=host,
            port=port,
            token=token,
            settings=settings,
            on_ready=ready,
            on_notice=lambda line: out.print(line, highlight=False, markup=False),
        )
    )


@app.command("server")
def server_cmd(
    store: StoreOpt = DEFAULT_STORE,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = 8000,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
    max_body_bytes: MaxBodyBytesOpt = None,
    public_url: PublicUrlOpt = None,
    output_url_ttl_s: OutputUrlTtlOpt = None,
    retry_after_s: RetryAfterOpt = None,
    sse_ping_s: SsePingOpt = None,
) -> None:
    """Run a gateway only (production): any number of them can share one store.

    Gateways on one store share the key of signed output links (see conveyor signing-key).

    Example: conveyor server --store postgresql://postgres@db/conveyor --public-url https://q.example
    """
    _logging(verbose)
    settings = gateway_settings(
        max_body_bytes=max_body_bytes,
        public_url=public_url,
        output_url_ttl_s=output_url_ttl_s,
        retry_after_s=retry_after_s,
        sse_ping_s=sse_ping_s,
    )
    out.print(f"conveyor gateway on http://{host}:{port} (store {store.split('@')[-1]})")
    from conveyor.server.run import run_server

    _run(run_server(store_url=store, host=host, port=port, settings=settings))


@app.command("worker")
def worker_cmd(
    store: StoreOpt = DEFAULT_STORE,
    cpus: Annotated[
        float | None,
        typer.Option(
            "--cpus",
            envvar="CONVEYOR_CPUS",
            min=0.01,
            help="CPUs to reserve for containers (each reserves its queue's cpu). "
            "Default: no limit.",
        ),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run an agent on this machine for every deployed queue of the store.

    Example: conveyor worker --store postgresql://postgres@db/conveyor --cpus 8
    """
    _logging(verbose)
    out.print(f"conveyor worker (store {store.split('@')[-1]}); SIGTERM drains")
    from conveyor.server.agent.settings import AgentSettings
    from conveyor.server.run import run_worker

    _run(run_worker(store_url=store, settings=AgentSettings(cpu_capacity=cpus)))


async def _create_token(store_url: str, workspace: str) -> str:
    from conveyor.server.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        ws = await store.ensure_workspace(workspace)
        return await store.create_token(ws.id)
    finally:
        await store.close()


@token_app.command("create")
def token_create(
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace name (created if needed); default: the one `conveyor serve` uses.",
            show_default=False,
        ),
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Create a token for a workspace; the token is the last line printed.

    Example: conveyor token create --workspace acme
    """
    from conveyor.server.run import DEFAULT_WORKSPACE

    workspace = workspace or DEFAULT_WORKSPACE
    token = _run(_create_token(store, workspace))
    out.print(f"token for workspace {workspace}:", highlight=False)
    print(token)


@workspace_app.command("create")
def workspace_create(
    name: Annotated[str, typer.Argument(help="Workspace name.")],
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Create a workspace (and a first token for it).

    Example: conveyor workspace create acme
    """
    token = _run(_create_token(store, name))
    out.print(f"workspace {name} ready; token:", highlight=False)
    print(token)


async def _rotate_signing_key(store_url: str) -> None:
    from conveyor.server.store import open_store

    store = open_store(store_url)
    await store.open()
    try:
        await store.rotate_server_key()
    finally:
        await store.close()


@signing_key_app.command("rotate")
def signing_key_rotate(store: StoreOpt = DEFAULT_STORE) -> None:
    """Make a new key for signed output links, kept in the store.

    New links are signed with it; links signed with the previous key work until they expire.

    Running gateways pick it up within a few seconds, without a restart.

    Only one previous key is kept: rotating twice within a link's lifetime ends the older links.

    Example: conveyor signing-key rotate --store postgresql://postgres@db/conveyor
    """
    _run(_rotate_signing_key(store))
    out.print(
        "new signing key in the store; links signed with the previous key work until they expire",
        highlight=False,
    )


# -- talking to a gateway -------------------------------------------------------------------


@app.command("deploy")
def deploy_cmd(
    target: Annotated[
        str, typer.Argument(help="The task queue as FILE:FUNC.", metavar="FILE:FUNC")
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Upload the folder of FILE as a code bundle and make the queue's next version.

    Bundled: the folder's files minus .git, __pycache__, .venv, .conveyor and its .conveyorignore.

    The ignore file takes gitignore-like patterns: *.log, build/, /docs, !keep.log.

    Deployed versions run on `conveyor worker` agents.

    Example: conveyor deploy app.py:resize
    """
    with _reported():
        from conveyor.sdk.loader import load_target

        loaded = load_target(target)
        config = loaded.config(code_path=None)
        root = loaded.path.parent
        bundle = make_bundle(root)
        if loaded.path.name not in bundle.files:
            raise ConveyorError(f"{loaded.path.name} is excluded by {root / IGNORE_FILE}")
        with _client(url, token) as client:
            answer = client.deploy(config.to_json(), bundle.data)
            out.print(
                f"deployed [cyan]{answer['name']}[/cyan] [bold]v{answer['version']}[/bold]"
                f"  stub {answer['stub_id']}  ({len(bundle.files)} files, "
                f"{len(bundle.data) / 1024:.1f} KiB)",
                highlight=False,
            )
            out.print(f"  url   {answer['url']}", highlight=False, soft_wrap=True)
            out.print(
                "  try   " + render.curl_line(answer["url"], client.token or ""),
                highlight=False,
                soft_wrap=True,
                markup=False,
            )


@app.command("put")
def put_cmd(
    name: Annotated[
        str, typer.Argument(help="Queue name, or NAME/vN, NAME/latest.", metavar="NAME")
    ],
    body: Annotated[
        str, typer.Argument(help="The request body: a JSON object.", metavar="JSON")
    ] = "{}",
    wait: Annotated[
        bool, typer.Option("--wait", "-w", help="Wait for the task, then print its result.")
    ] = False,
    timeout: TimeoutOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Enqueue a task and print its id.

    The JSON object's keys are the handler's keyword arguments, or give "args" and "kwargs".

    With --wait: a live status line until the task ends, then its final status (stderr) and
    its result as JSON (stdout).

    Exit code with --wait: 0 if the task is COMPLETE, 1 for any other end, 2 on --timeout.

    Example: conveyor put resize '{"path": "a.png", "width": 100}' --wait
    """
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="JSON") from None
    if not isinstance(payload, dict):
        raise typer.BadParameter("must be a JSON object, e.g. '{\"x\": 3}'", param_hint="JSON")
    with _reported(), _client(url, token) as client:
        with warnings.catch_warnings(record=True, category=ConveyorWarning) as told:
            task_id = client.send(enqueue_call(name, payload))["task_id"]
        for warning in told:  # e.g. no agent runs that version: say why it may wait
            render.print_warning(err, f"{warning.message}; the task waits until one does")
        if not wait:
            print(task_id)
            return
        err.print(f"task {task_id}", highlight=False)
        task = render.follow_task(client, task_id, timeout, err)
    if task["status"] != TaskStatus.COMPLETE:
        render.print_error(err, "task " + render.outcome_line(task).plain)
        raise typer.Exit(EXIT_FAILED)
    err.print(render.ended_line(task), highlight=False)
    render.print_json(task.get("result"))


@task_app.command("list")
def task_list(
    status: Annotated[
        str | None,
        typer.Option(help="Comma list of statuses, any case; ERROR means FAILED."),
    ] = None,
    queue: Annotated[str | None, typer.Option(help="Only tasks of this queue.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many tasks.")] = 100,
    output: Annotated[
        ListFormat, typer.Option("--format", help="A table, or the API's JSON list.")
    ] = ListFormat.table,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List tasks, newest first.

    Example: conveyor task list --status pending,running --queue resize --limit 20
    """
    filters: TaskFilters = {"limit": limit}
    if status:
        filters["status"] = _statuses(status)
    if queue:
        filters["queue"] = queue
    with _reported(), _client(url, token) as client:
        if queue:
            _known_queue(client, queue)
        answer = client.tasks(**filters)
    if output is ListFormat.json:
        render.print_json(answer["data"])
        return
    out.print(render.task_table(answer["data"]))
    out.print(render.count_line(len(answer["data"]), answer.get("next_cursor") is not None))


@task_app.command("get")
def task_get(
    task_id: Annotated[str, typer.Argument(help="The task id.", metavar="ID")],
    output: Annotated[
        TaskFormat, typer.Option("--format", help="A readable panel, or the API's JSON.")
    ] = TaskFormat.panel,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Show one task: every field, its result or error with traceback, outputs, attempts.

    Example: conveyor task get 0b6c0c1e-4d1c-4c29-9a7e-1f2d1f0b7a55 --format json
    """
    with _reported(), _client(url, token) as client:
        task = client.task(task_id)
    if output is TaskFormat.json:
        render.print_json(task)
    else:
        render.print_task(out, task)


@task_app.command("stop")
def task_stop(
    task_ids: Annotated[
        list[str], typer.Argument(help="Task ids, or - to read them from stdin.", metavar="ID")
    ],
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Cancel tasks; one line per id: cancelled, already finished or not found.

    Exit code 0 if every id was cancelled or had already finished, 1 if any was not found.

    Example: conveyor task stop ID1 ID2   or   cat ids.txt | conveyor task stop -
    """
    ids = _ids(task_ids, "nothing to stop: no task ids on stdin")
    with _reported(), _client(url, token) as client:
        answer = client.cancel(ids)
    what = {task_id: "cancelled" for task_id in answer.get("cancelled", [])}
    what.update({task_id: "already finished" for task_id in answer.get("already_finished", [])})
    for task_id in ids:
        out.print(f"{task_id}  {what.get(task_id, 'not found')}", highlight=False)
    if any(task_id not in what for task_id in ids):
        raise typer.Exit(1)


@task_app.command("wait")
def task_wait(
    task_ids: Annotated[
        list[str], typer.Argument(help="Task ids, or - to read them from stdin.", metavar="ID")
    ],
    timeout: TimeoutOpt = None,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """Wait until every task has ended, with a progress bar; then one line per task.

    Exit code 0 only if all are COMPLETE, 1 otherwise, 2 if --timeout runs out first.

    Example: conveyor task wait 0b6c0c1e-4d1c-4c29-9a7e-1f2d1f0b7a55 --timeout 600
    """
    ids = _ids(task_ids, "nothing to wait for: no task ids on stdin")
    with _reported(), _client(url, token) as client:
        latest, finished = render.wait_tasks(client, ids, timeout, err)
    for task_id in ids:
        out.print(render.outcome_line(latest[task_id]), highlight=False, soft_wrap=True)
    if not finished:
        render.print_error(err, f"{timeout} s passed before every task ended")
        raise typer.Exit(EXIT_TIMEOUT)
    if any(latest[i]["status"] != TaskStatus.COMPLETE for i in ids):
        raise typer.Exit(EXIT_FAILED)


@queue_app.command("list")
def queue_list(
    output: Annotated[
        ListFormat, typer.Option("--format", help="A table, or the API's JSON list.")
    ] = ListFormat.table,
    url: UrlOpt = None,
    token: TokenOpt = None,
) -> None:
    """List task queues: versions, depth, live containers and task counts per status.

    Example: conveyor queue list --format json
    """
    with _reported(), _client(url, token) as client:
        queues = client.queues()
    if output is ListFormat.json:
        render.print_json(queues)
    else:
        out.print(render.queue_table(queues))


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
