"""Run the pieces: ``serve`` (gateway + agent on one store), ``server``, ``worker``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from conveyor.agent.agent import Agent, AgentSettings
from conveyor.errors import PartEnded
from conveyor.gateway.app import create_app
from conveyor.gateway.settings import GatewaySettings
from conveyor.loader import load_target
from conveyor.serve_console import watch_routes
from conveyor.store import open_store
from conveyor.store.base import Store
from conveyor.store.records import Stub

DEFAULT_WORKSPACE = "default"
log = logging.getLogger("conveyor")


@dataclass(frozen=True)
class ServeInfo:
    url: str
    token: str
    stubs: Sequence[Stub]


def sqlite_folder(store_url: str) -> Path:
    """The folder that holds an SQLite store (its token file and code cache live beside it)."""
    if store_url.startswith("sqlite:///"):
        return Path(store_url.removeprefix("sqlite:///")).parent
    return Path(".conveyor")


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
        raise SystemExit("that token belongs to another workspace")
    keep.parent.mkdir(parents=True, exist_ok=True)
    keep.write_text(token + "\n")
    keep.chmod(0o600)
    return token


async def register_targets(store: Store, workspace_id: str, specs: Sequence[str]) -> list[Stub]:
    stubs = []
    for spec in specs:
        target = load_target(spec)
        config = target.config(code_path=str(target.path.parent))
        stub = await store.upsert_serve_stub(
            workspace_id, config.name, config.to_dict(), target.path.read_bytes()
        )
        stubs.append(stub)
    return stubs


@contextlib.asynccontextmanager
async def _opened(store_url: str, stop: asyncio.Event) -> AsyncIterator[Store]:
    """The opened store, closed on exit; SIGINT and SIGTERM set ``stop`` meanwhile."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    store = open_store(store_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: ``stop`` decides, so the agent drains first."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        http="httptools",
        loop="asyncio",
    )
    return _Server(config)


async def serve(
    specs: Sequence[str],
    *,
    store_url: str,
    host: str,
    port: int,
    token: str | None,
    settings: GatewaySettings | None = None,
    on_ready: Callable[[ServeInfo], Awaitable[None] | None] | None = None,
    on_notice: Callable[[str], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Gateway + agent + callback sender on one store, in this process. The agent runs the
    given targets and every deployed version; ``on_notice`` hears which version each
    unversioned route uses, at start and when that changes."""
    stop = stop or asyncio.Event()
    async with _opened(store_url, stop) as store:
        workspace = await store.ensure_workspace(DEFAULT_WORKSPACE)
        folder = sqlite_folder(store_url)
        token = await ensure_token(store, workspace.id, token, folder / "token")
        stubs = await register_targets(store, workspace.id, specs)
        agent = Agent(
            store,
            AgentSettings(stub_ids=frozenset(s.id for s in stubs), code_cache=folder / "code"),
        )
        app = create_app(store, settings, deliver_callbacks=True)
        announced = asyncio.Event()
        jobs = [agent.run(stop)]
        if on_notice is not None:
            served = {s.id for s in stubs}
            watch = watch_routes(store, workspace.id, served, on_notice, stop)
            jobs.append(_after(announced, watch))

        async def started() -> None:
            await _announce(on_ready, host, port, token, stubs)
            announced.set()

        await _run_together(stop, _uvicorn(app, host, port), *jobs, on_started=started)


async def _after(event: asyncio.Event, job: Awaitable[None]) -> None:
    await event.wait()
    await job


async def run_server(
    *,
    store_url: str,
    host: str,
    port: int,
    settings: GatewaySettings | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Gateway (and callback sender) only: for production, any store URL."""
    stop = stop or asyncio.Event()
    async with _opened(store_url, stop) as store:
        app = create_app(store, settings, deliver_callbacks=True)
        await _run_together(stop, _uvicorn(app, host, port))


async def run_worker(
    *, store_url: str, settings: AgentSettings | None = None, stop: asyncio.Event | None = None
) -> None:
    """An agent on this machine for every deployed stub of the store."""
    stop = stop or asyncio.Event()
    async with _opened(store_url, stop) as store:
        await Agent(store, settings).run(stop)


async def _run_together(
    stop: asyncio.Event,
    server: uvicorn.Server,
    *jobs: Awaitable[None],
    on_started: Callable[[], Awaitable[None]] | None = None,
) -> None:
    serving = asyncio.create_task(server.serve())
    others = [asyncio.ensure_future(job) for job in jobs]
    while not server.started and not serving.done():
        await asyncio.sleep(0.02)
    if serving.done():
        stop.set()
        await asyncio.gather(*others, return_exceptions=True)
        serving.result()  # re-raise why uvicorn could not start (e.g. port in use)
        raise SystemExit(f"the server stopped at start-up (is port {server.config.port} free?)")
    if on_started is not None:
        await on_started()
    stopping = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait([stopping, serving, *others], return_when=asyncio.FIRST_COMPLETED)
    stop.set()
    ended = [job for job in (serving, *others) if job in done]
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
    stubs: Sequence[Stub],
) -> None:
    if on_ready is None:
        return
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    result = on_ready(ServeInfo(f"http://{shown}:{port}", token, stubs))
    if result is not None:
        await result
