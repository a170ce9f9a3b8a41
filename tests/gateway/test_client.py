"""The Python clients: AsyncClient in process, Client against a real uvicorn server."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn

from conveyor.errors import (
    ConnectionFailed,
    HTTPError,
    NotConfigured,
    TaskCancelled,
    TaskFailed,
    WaitTimeout,
)
from conveyor.sdk.async_client import AsyncClient
from conveyor.sdk.client import Client
from conveyor.sdk.settings import DEFAULT_URL, load_settings
from conveyor.server.gateway.app import create_app
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import Stub
from conveyor.tasks import TaskStatus
from tests.gateway.conftest import Tenant, deploy, finish, start

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LiveServer:
    """uvicorn on a thread with its own loop; the store lives (and is driven) in that loop."""

    def __init__(self, db: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.store: Store = open_store(f"sqlite:///{db}")
        self.loop = asyncio.new_event_loop()
        app = create_app(self.store, manage_store=True)
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.loop.run_until_complete,
                                       args=(self.server.serve(),), daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with LiveServer(tmp_path / "live.db") as server:
        yield server


@pytest.fixture
def live_tenant(live: LiveServer) -> tuple[Tenant, Stub]:
    async def setup() -> tuple[Tenant, Stub]:
        workspace = await live.store.ensure_workspace("alice")
        tenant = Tenant(workspace, await live.store.create_token(workspace.id))
        return tenant, await deploy(live.store, tenant, "resize", max_retries=0)

    return live.run(setup())


def later(seconds: float, fn: Any) -> threading.Timer:
    timer = threading.Timer(seconds, fn)
    timer.start()
    return timer


def test_sync_client_put_status_and_result(
    live: LiveServer, live_tenant: tuple[Tenant, Stub]
) -> None:
    tenant, stub = live_tenant
    with Client(live.url, tenant.token) as client:
        task = client.put("resize", "a.png", width=100, idempotency_key="k1")
        assert client.put("resize", "a.png", width=100, idempotency_key="k1").id == task.id
        assert task.status() is TaskStatus.PENDING
        view = live.run(live.store.get_task(task.id))
        assert view is not None and view.task.payload == '{"args":["a.png"],"kwargs":{"width":100}}'

        async def complete() -> None:
            await finish(live.store, await start(live.store, stub), result='{"width": 100}',
                         outputs=[("o.txt", b"x")])

        timer = later(0.5, lambda: live.run(complete()))
        assert task.result(timeout=20) == {"width": 100}
        timer.join()
        (output,) = task.outputs()
        assert httpx.get(output["url"]).content == b"x"
        assert client.tasks(status="COMPLETE")["data"][0]["id"] == task.id


def test_sync_client_terminal_errors_and_timeouts(
    live: LiveServer, live_tenant: tuple[Tenant, Stub]
) -> None:
    tenant, stub = live_tenant
    with Client(live.url, tenant.token) as client:
        waiting = client.put("resize")
        started = time.monotonic()
        with pytest.raises(WaitTimeout):
            waiting.result(timeout=1)
        assert time.monotonic() - started < 10
        assert waiting.cancel()["cancelled"] == [waiting.id]
        with pytest.raises(TaskCancelled) as cancelled:
            waiting.result(timeout=10)
        assert cancelled.value.task["status"] == "CANCELLED"

        failing = client.put("resize")
        error = '{"type": "ValueError", "message": "bad width", "traceback": ""}'
        live.run(finish(live.store, live.run(start(live.store, stub)), TaskStatus.FAILED,
                        error=error))
        with pytest.raises(TaskFailed, match="bad width"):
            failing.result(timeout=10)

        with pytest.raises(HTTPError) as missing:
            client.task("00000000-0000-0000-0000-000000000000")
        assert missing.value.status_code == 404 and "unknown task" in str(missing.value)
        with pytest.raises(HTTPError) as unknown_queue:
            client.put("nope")
        assert unknown_queue.value.status_code == 404


def test_connection_failure_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, "t") as client, pytest.raises(ConnectionFailed, match=url):
        client.task("x")


def test_settings_from_env_then_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    with pytest.raises(NotConfigured):
        load_settings({}, config)
    config.write_text('url = "http://file:1"\ntoken = "file-token"\n')
    assert load_settings({}, config) == ("http://file:1", "file-token")
    env = {"CONVEYOR_URL": "http://env:2", "CONVEYOR_TOKEN": "env-token"}
    assert load_settings(env, config) == ("http://env:2", "env-token")
    assert load_settings({"CONVEYOR_TOKEN": "env-token"}, config) == ("http://file:1", "env-token")
    given = load_settings(env, config, url="http://flag:3", token=None)
    assert given == ("http://flag:3", "env-token")  # a flag beats the variable, key by key
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    with pytest.raises(NotConfigured):
        Client.from_env()
    monkeypatch.setenv("CONVEYOR_URL", "http://env:2")
    monkeypatch.setenv("CONVEYOR_TOKEN", "tok")
    client = Client.from_env()
    assert client.url == "http://env:2" and client.token == "tok"
    client.close()


def test_without_a_url_the_default_one_as_the_cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings({"CONVEYOR_TOKEN": "t"}, tmp_path / "none.toml") == (DEFAULT_URL, "t")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    monkeypatch.setenv("CONVEYOR_TOKEN", "tok")
    with Client.from_env() as client:
        assert client.url == "http://127.0.0.1:8000"
    with pytest.raises(NotConfigured, match="no token: set CONVEYOR_TOKEN"):
        load_settings({}, tmp_path / "none.toml")


async def test_a_url_without_scheme_is_http(
    live: LiveServer, live_tenant: tuple[Tenant, Stub]
) -> None:
    tenant, _ = live_tenant
    bare = live.url.removeprefix("http://")  # as in CONVEYOR_URL=localhost:8001
    with Client(bare, tenant.token) as client:
        assert client.put("resize", "a.png").status() is TaskStatus.PENDING
    async with AsyncClient(bare, tenant.token) as async_client:
        listed = await async_client.tasks()
    assert listed["data"][0]["deployment"]["name"] == "resize"


async def test_async_client(
    transport: httpx.ASGITransport, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    async with AsyncClient("http://gateway.test", alice.token, transport=transport) as client:
        task = await client.put("resize", 1, callback_url="http://cb.example/x")
        view = await store.get_task(task.id)
        assert view is not None and view.task.callback_url == "http://cb.example/x"
        assert await task.status() is TaskStatus.PENDING
        batch = await client.put_batch("resize", [{"args": [2]}, {"w": 3}])
        assert len(batch) == 2
        listed = await client.tasks(status=["PENDING"], queue="resize", limit=10)
        assert {t["id"] for t in listed["data"]} == {task.id, *(t.id for t in batch)}

        async def complete() -> None:
            await asyncio.sleep(0.3)
            await finish(store, await start(store, stub), result='"done"')

        completer = asyncio.create_task(complete())
        statuses = [t["status"] async for t in client.subscribe(task.id)]
        await completer
        assert statuses[-1] == "COMPLETE" and statuses[0] == "PENDING"
        assert await task.result(timeout=5) == "done"
        cancelled = await client.cancel([batch[0].id])
        assert cancelled["cancelled"] == [batch[0].id]
        with pytest.raises(TaskCancelled):
            await batch[0].result(timeout=5)
        with pytest.raises(WaitTimeout):
            await batch[1].result(timeout=0.5)
