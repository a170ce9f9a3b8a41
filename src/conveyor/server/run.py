"""Run the pieces: ``serve`` (gateway + agent on one store), ``server``, ``worker``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import secrets
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from conveyor.errors import PartEnded, StartupError, StoreError
from conveyor.sdk.loader import load_target
from conveyor.server.agent import sandbox
from conveyor.server.agent.agent import Agent
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.app import server_app
from conveyor.server.callbacks import delivering
from conveyor.server.console import watch_routes
from conveyor.server.gateway.connection import limited_protocol
from conveyor.server.gateway.state import GatewayState, with_bound_url
from conveyor.server.retention import retaining
from conveyor.server.schedules import ticking
from conveyor.server.secret_key import check_secret_key
from conveyor.server.settings import (
    ServerSettings,
    ServeSettings,
    WorkerSettings,
    shown_store,
    sqlite_folder,
)
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import Stub

DEFAULT_WORKSPACE = "default"
log = logging.getLogger("conveyor")


@dataclass(frozen=True)
class ServedQueue:
    stub: Stub
    #: A request body for a first ``curl``: the handler's parameters (``Target.example_body``).
    example_body: Mapping[str, Any]


@dataclass(frozen=True)
class ServeInfo:
    url: str
    token: str
    queues: Sequence[ServedQueue]


async def ensure_token(store: Store, workspace_id: str, token: str | None, keep: Path) -> str:
    """The fixed ``token``; else the one kept in ``keep``; else a new one, then kept."""
    if token is None and keep.is_file():
        token = keep.read_text().strip() or None
    if token is None:
        token = "cv_" + secrets.token_urlsafe(24)
    found = await store.authenticate(token)
    if found is None:
        await store.create_token(workspace_id, token)
    elif found.id != workspace_id:
        raise StartupError(
            f"that token belongs to another workspace than {DEFAULT_WORKSPACE!r}; "
            "pass one of its tokens to --token, or none"
        )
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(token + "\n")
    keep.chmod(0o600)
    return token


async def register_targets(
    store: Store, workspace_id: str, specs: Sequence[str]
) -> list[ServedQueue]:
    served = []
    for spec in specs:
        target = load_target(spec)
        config = target.config(code_path=str(target.path.parent))
        stub = await store.upsert_serve_stub(
            workspace_id, config.name, config.to_dict(), target.path.read_bytes()
        )
        served.append(ServedQueue(stub, target.example_body()))
    return served


@contextlib.asynccontextmanager
async def _opened(store_url: str, stop: asyncio.Event) -> AsyncIterator[Store]:
    """The opened store, closed on exit; SIGINT and SIGTERM set ``stop`` meanwhile."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    store = open_store(store_url)  # a malformed URL: ConfigError, naming the accepted forms
    try:
        await store.open()
    except StoreError as exc:
        raise StartupError(
            f"cannot open the store {shown_store(store_url)}: {exc}; "
            "check --store (or CONVEYOR_STORE)"
        ) from None
    try:
        yield store
    finally:
        await store.close()


class _Server(uvicorn.Server):
    """uvicorn on sockets bound beforehand (``listening``), without its own signal handlers:
    ``stop`` decides, so the agent drains first."""

    def __init__(self, config: uvicorn.Config, listening: list[socket.socket]) -> None:
        super().__init__(config)
        self.listening = listening

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def try_listening(host: str, port: int) -> None:
    """A ``StartupError`` now if ``host:port`` cannot be listened on (nothing is kept)."""
    for sock in _listening(host, port, listen=False):
        sock.close()


def _listening(
    host: str, port: int, *, reuse_port: bool = False, listen: bool = True
) -> list[socket.socket]:
    """Sockets listening on every address of ``host`` (as asyncio's ``create_server`` binds
    them), or a ``StartupError`` that says what to pass instead. ``reuse_port``: the port is
    shared with the other processes of ``server --processes`` (the kernel spreads their
    connections).

    Bound here because uvicorn, binding itself, logs the error and then exits the event loop
    with a traceback.
    """
    if not 0 < port < 65536:  # getaddrinfo would quietly take it modulo 65536
        raise StartupError(f"{port} is not a port number; pass --port between 1 and 65535")
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise StartupError(f"cannot listen on {host!r}: {exc}; pass --host an address of "
                           "this machine, e.g. 127.0.0.1 or 0.0.0.0") from None
    sockets: list[socket.socket] = []
    for family, kind, proto, _, address in dict.fromkeys(found):
        sock = socket.socket(family, kind, proto)
        sockets.append(sock)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            if listen:
                sock.listen()  # uvicorn listens again, with its backlog
        except OSError as exc:
            for opened in sockets:
                opened.close()
            raise StartupError(_bind_problem(exc, host, port)) from None
    return sockets


def _bind_problem(exc: OSError, host: str, port: int) -> str:
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} is already in use; pass --port to pick another"
    if exc.errno == errno.EACCES:
        return f"no permission to listen on port {port}; pass --port 1024 or above"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; pass --host 127.0.0.1 or 0.0.0.0"
    return f"cannot listen on {host}:{port}: {exc.strerror}; pass another --host or --port"


def _uvicorn(app: FastAPI, host: str, port: int, *, reuse_port: bool = False) -> _Server:
    listening = _listening(host, port, reuse_port=reuse_port)
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        # httptools, with the header size and read time and connection bounds uvicorn lacks
        # for it (DESIGN A13); uvicorn's limit_concurrency would not count half-sent requests.
        http=limited_protocol(state.settings),
        timeout_keep_alive=5,  # an idle kept-alive connection closes after this
        loop="asyncio",
    )
    return _Server(config, listening)


async def serve(
    settings: ServeSettings,
    *,
    on_ready: Callable[[ServeInfo], Awaitable[None] | None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Gateway + agent + callback sender on one store, in this process. The agent runs the
    given targets and every deployed version; ``on_notice`` hears which version each
    unversioned route uses, at start and when that changes, and how images build."""
    stop = stop or asyncio.Event()
    host, port = settings.host, settings.port
    check_sandbox(settings.agent)
    async with _opened(settings.store, stop) as store:
        await check_secret_key(store, settings.secret_key)
        workspace = await store.ensure_workspace(DEFAULT_WORKSPACE)
        keep = sqlite_folder(settings.store) / "token"
        token = await ensure_token(store, workspace.id, settings.token, keep)
        served = await register_targets(store, workspace.id, settings.targets)
        own = frozenset(q.stub.id for q in served)  # known only once registered
        agent = Agent(
            store, replace(settings.agent, stub_ids=settings.agent.stub_ids | own), say=on_notice
        )
        gateway = with_bound_url(settings.gateway, host, port)
        app = server_app(
            store, gateway, sandbox=settings.agent.sandbox, secret_key=settings.secret_key
        )
        server = _uvicorn(app, host, port)  # first: a busy port must not leave jobs unrun
        announced = asyncio.Event()
        jobs = [agent.run(stop)]
        if on_notice is not None:
            ids = {q.stub.id for q in served}
            watch = watch_routes(store, workspace.id, ids, on_notice, stop)
            jobs.append(_after(announced, watch))

        async def started() -> None:
            await _announce(on_ready, host, port, token, served)
            announced.set()

        # The callback sender, the retention chore and the tick maker stop after the gateway.
        async with (
            delivering(store, settings.callbacks),
            retaining(store, settings.retention_s),
            _ticking(app),
        ):
            await _run_together(stop, server, *jobs, on_started=started)


async def _after(event: asyncio.Event, job: Awaitable[None]) -> None:
    await event.wait()
    await job


async def run_server(
    settings: ServerSettings, *, stop: asyncio.Event | None = None, reuse_port: bool = False
) -> None:
    """Gateway (with callback sender and retention chore) only: for production, any store URL.
    ``reuse_port``: one of several processes on the port (``conveyor.cli.processes``)."""
    stop = stop or asyncio.Event()
    async with (
        _opened(settings.store, stop) as store,
        delivering(store, settings.callbacks),
        retaining(store, settings.retention_s),
    ):
        await check_secret_key(store, settings.secret_key)
        gateway = with_bound_url(settings.gateway, settings.host, settings.port)
        app = server_app(store, gateway, secret_key=settings.secret_key)
        server = _uvicorn(app, settings.host, settings.port, reuse_port=reuse_port)
        async with _ticking(app):
            await _run_together(stop, server)


def _ticking(app: FastAPI) -> contextlib.AbstractAsyncContextManager[object]:
    """The gateway's tick maker: the ticks of the schedules that live agents run."""
    state = app.state.gateway
    assert isinstance(state, GatewayState)
    return ticking(state.store, state.agents.runs)


async def run_worker(
    settings: WorkerSettings,
    *,
    stop: asyncio.Event | None = None,
    on_notice: Callable[[str], None] | None = None,
) -> None:
    """An agent on this machine for every deployed stub of the store (and the retention
    chore); ``on_notice`` hears how images build."""
    stop = stop or asyncio.Event()
    check_sandbox(settings.agent)
    async with _opened(settings.store, stop) as store, retaining(store, settings.retention_s):
        await check_secret_key(store, settings.agent.secret_key)
        await Agent(store, settings.agent, say=on_notice).run(stop)


def check_sandbox(agent: AgentSettings) -> None:
    """An agent that should sandbox its worker processes and cannot does not start."""
    if not agent.sandbox:
        return
    problem = sandbox.unavailable()
    if problem is not None:
        raise StartupError(
            f"cannot sandbox worker processes: {problem}; pass --no-sandbox (or set "
            "CONVEYOR_NO_SANDBOX=1) to run handlers unsandboxed, as this agent's user "
            "(one trust domain, see docs/security.md)"
        )


async def _run_together(
    stop: asyncio.Event,
    server: _Server,
    *jobs: Awaitable[None],
    on_started: Callable[[], Awaitable[None]] | None = None,
) -> None:
    serving = asyncio.create_task(server.serve(sockets=server.listening))
    others = [asyncio.ensure_future(job) for job in jobs]
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if serving.done():
        stop.set()
        await asyncio.gather(*others, return_exceptions=True)
        serving.result()  # re-raise why uvicorn could not start
        raise StartupError("the gateway stopped during its start-up")
    if on_started is not None:
        await on_started()
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([stopping, serving, *others], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    # A part that returned because stop was asked for in the same moment ended as asked.
    ended = [job for job in (serving, *others) if job in done
             and not (stopping in done and not job.cancelled() and job.exception() is None)]
    for job in ended:  # a gateway without its agent (or the reverse) must not go on quietly
        error = None if job.cancelled() else job.exception()
        log.critical("a part of this process ended unexpectedly", exc_info=error)
    await asyncio.gather(*others, return_exceptions=True)  # the agent drains first
    server.should_exit = True
    await asyncio.gather(serving, stopping, return_exceptions=True)
    if ended:
        raise PartEnded()


async def _announce(
    on_ready: Callable[[ServeInfo], Awaitable[None] | None] | None,
    host: str,
    port: int,
    token: str,
    served: Sequence[ServedQueue],
) -> None:
    if on_ready is None:
        return
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    result = on_ready(ServeInfo(f"http://{shown}:{port}", token, served))
    if result is not None:
        await result
