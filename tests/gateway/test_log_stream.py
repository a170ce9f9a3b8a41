"""``GET /v2/task/{id}/logs/stream`` over a real uvicorn: each line exactly once, pushed as it is
stored (the ping interval is 15 s, so a line within seconds was pushed), resumed after
``Last-Event-ID`` or ``?cursor=``, ended by ``event: end`` once the task has ended."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import httpx
import orjson

from conveyor.sdk.async_client import AsyncClient
from conveyor.server.app import server_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.store.base import Store
from conveyor.server.store.records import TaskRecord
from conveyor.tasks import TaskStatus
from tests.gateway.conftest import Tenant, deploy, finish, start
from tests.gateway.served import served
from tests.gateway.test_insight import append
from tests.gateway.test_stream_fanout import CountingStore
from tests.gateway.test_tasks import enqueue

Event = tuple[str, str | None, dict[str, Any]]


class Events:
    """The events of one open SSE response, read as they come."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.text = ""
        self._chunks: AsyncIterator[str] = response.aiter_text()

    @property
    def events(self) -> list[Event]:
        events = []
        for block in self.text.split("\n\n")[:-1]:  # the last one is not whole yet
            fields = dict(line.split(": ", 1) for line in block.splitlines()
                          if not line.startswith(":"))
            if fields:
                events.append((fields["event"], fields.get("id"), orjson.loads(fields["data"])))
        return events

    @property
    def lines(self) -> list[str]:
        return [data["line"] for name, _, data in self.events if name == "log"]

    @property
    def ids(self) -> list[str]:
        return [event_id for name, event_id, _ in self.events if name == "log" and event_id]

    async def until(self, done: Callable[[Events], bool], timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            while not done(self):
                self.text += await anext(self._chunks)

    async def to_the_end(self, timeout: float = 5) -> None:
        async with asyncio.timeout(timeout):
            async for chunk in self._chunks:
                self.text += chunk


def lines_of(n: int) -> Callable[[Events], bool]:
    return lambda events: len(events.lines) >= n


@asynccontextmanager
async def log_stream(
    http: httpx.AsyncClient, tenant: Tenant, task_id: str, last_event_id: str | None = None,
    query: str = "",
) -> AsyncIterator[Events]:
    headers = dict(tenant.auth)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    path = f"/v2/task/{task_id}/logs/stream{query}"
    async with http.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield Events(response)


@asynccontextmanager
async def gateway(
    store: Store, settings: GatewaySettings | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    app = server_app(store, settings or GatewaySettings())
    async with served(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        yield http


async def running_task(http: httpx.AsyncClient, store: Store, alice: Tenant) -> TaskRecord:
    stub = await deploy(store, alice, "resize")
    await enqueue(http, alice)
    return await start(store, stub)


async def test_each_line_once_pushed_and_resumed_after_the_last_id(
    store: Store, alice: Tenant
) -> None:
    async with gateway(store) as http:
        task = await running_task(http, store, alice)
        await append(store, task, ("stdout", "a1"), ("stderr", "a2"), ("stdout", "a3"))
        async with log_stream(http, alice, task.id) as first:
            await first.until(lines_of(3))
            await append(store, task, ("stdout", "b1"), ("stdout", "b2"))
            await first.until(lines_of(5))
            await append(store, task, ("stdout", "c1"))
            await first.until(lines_of(6))
        assert first.lines == ["a1", "a2", "a3", "b1", "b2", "c1"]
        assert [data["stream"] for _, _, data in first.events] == ["stdout", "stderr"] + [
            "stdout"] * 4
        assert first.ids == sorted(first.ids, key=int) and len(set(first.ids)) == 6

        await append(store, task, ("stdout", "d1"), ("stderr", "d2"))  # while disconnected
        async with log_stream(http, alice, task.id, last_event_id=first.ids[-1]) as resumed:
            await resumed.until(lines_of(2))
            await append(store, task, ("stdout", "e1"))
            await finish(store, task)
            await resumed.to_the_end()
        assert resumed.lines == ["d1", "d2", "e1"]
        assert resumed.events[-1] == ("end", None, {"status": "COMPLETE"})

        # ``?cursor=`` as well (a line id, or a next_cursor of /logs); the header wins.
        query = f"?cursor={first.ids[1]}"
        async with log_stream(http, alice, task.id, query=query) as from_cursor:
            await from_cursor.to_the_end()
        assert from_cursor.lines == ["a3", "b1", "b2", "c1", "d1", "d2", "e1"]
        async with log_stream(http, alice, task.id, first.ids[4], query=query) as both:
            await both.to_the_end()
        assert both.lines == ["c1", "d1", "d2", "e1"]


async def test_an_ended_task_sends_its_lines_then_end(store: Store, alice: Tenant) -> None:
    async with gateway(store) as http:
        task = await running_task(http, store, alice)
        await append(store, task, ("stdout", "only line"))
        await finish(store, task, TaskStatus.FAILED, error='{"type": "E", "message": "m"}')
        started = time.monotonic()
        async with log_stream(http, alice, task.id) as events:
            await events.to_the_end()
        assert time.monotonic() - started < 2
        assert [(name, data.get("line")) for name, _, data in events.events] == [
            ("log", "only line"), ("end", None)]
        assert events.events[-1][2] == {"status": "FAILED"}
        assert events.events[0][2]["attempt"] == 1


async def test_more_than_a_page_arrives_at_once(store: Store, alice: Tenant) -> None:
    async with gateway(store) as http:
        task = await running_task(http, store, alice)
        async with log_stream(http, alice, task.id) as events:
            await append(store, task, *(("stdout", f"line {i}") for i in range(2500)))
            await events.until(lines_of(2500))
        assert events.lines == [f"line {i}" for i in range(2500)]


async def test_a_cancelled_tasks_late_lines_are_sent(store: Store, alice: Tenant) -> None:
    async with gateway(store) as http:
        task = await running_task(http, store, alice)
        async with log_stream(http, alice, task.id) as events:
            await append(store, task, ("stdout", "before"))
            await events.until(lines_of(1))
            cancel = await http.post("/v2/task/cancel/", json={"task_ids": [task.id]},
                                     headers=alice.auth)
            assert cancel.json()["cancelled"] == [task.id]
            cancelled = time.monotonic()
            await asyncio.sleep(0.7)  # the killed process's last lines arrive late
            await append(store, task, ("stderr", "Traceback: KeyboardInterrupt"))
            await events.to_the_end()
        ended_after = time.monotonic() - cancelled
        assert events.lines == ["before", "Traceback: KeyboardInterrupt"]
        assert events.events[-1] == ("end", None, {"status": "CANCELLED"})
        assert 1.0 < ended_after < 4, ended_after


async def test_a_task_cancelled_long_ago_ends_at_once(store: Store, alice: Tenant) -> None:
    async with gateway(store) as http:
        task = await running_task(http, store, alice)
        await append(store, task, ("stdout", "before"))
        await store.cancel(alice.workspace.id, [task.id], now=time.time() - 60)
        started = time.monotonic()
        async with log_stream(http, alice, task.id) as events:
            await events.to_the_end()
        assert time.monotonic() - started < 1
        assert events.lines == ["before"] and events.events[-1][0] == "end"


async def test_bad_resume_points_are_400_before_streaming(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    task_id = await enqueue(http, alice)
    path = f"/v2/task/{task_id}/logs/stream"
    for headers, query in [({"Last-Event-ID": "abc"}, ""), ({}, "?cursor=-1"),
                           ({"Last-Event-ID": "1e9"}, "?cursor=1")]:
        response = await http.get(path + query, headers={**alice.auth, **headers})
        assert response.status_code == 400, (headers, query, response.text)
        assert "cursor" in response.json()["error"]


async def test_log_lines_wake_log_streams_only(store: Store, alice: Tenant) -> None:
    """A ``logs`` event makes the task's log streams read, not its status streams."""
    counting = CountingStore(store)
    async with gateway(cast(Store, counting)) as http:
        task = await running_task(http, store, alice)
        status_path = f"/v2/task/{task.id}/subscribe"
        async with http.stream("GET", status_path, headers=alice.auth) as status, \
                log_stream(http, alice, task.id) as events:
            status_events = Events(status)
            await status_events.until(lambda e: "RUNNING" in e.text)
            counting.calls.clear()
            for n in range(5):
                await append(store, task, ("stdout", f"line {n}"))
                await events.until(lines_of(n + 1))
            assert counting.calls["get_task"] == 0, counting.calls
            assert 1 <= counting.calls["task_logs"] <= 10, counting.calls


async def test_log_streams_count_against_the_workspaces_streams(
    store: Store, alice: Tenant
) -> None:
    async with gateway(store, GatewaySettings(max_streams_per_workspace=1)) as http:
        task = await running_task(http, store, alice)
        async with log_stream(http, alice, task.id):
            refused = await http.get(f"/v2/task/{task.id}/logs/stream", headers=alice.auth)
            assert refused.status_code == 429
            assert "error" in refused.json() and "Retry-After" in refused.headers
            subscribe = await http.get(f"/v2/task/{task.id}/subscribe", headers=alice.auth)
            assert subscribe.status_code == 429
        async with asyncio.timeout(30):  # the slot is freed once the server sees the close
            while True:
                async with http.stream("GET", f"/v2/task/{task.id}/logs/stream",
                                       headers=alice.auth) as again:
                    if again.status_code == 200:
                        break
                    assert again.status_code == 429
                await asyncio.sleep(0.1)


class CuttingProxy:
    """A TCP proxy in front of the gateway whose ``cut`` drops every open connection, as a
    network failure would."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._port)
        self._writers += [writer, up_writer]
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        async with server:
            yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
            self.cut()


async def test_the_client_follows_across_a_dropped_connection(
    store: Store, alice: Tenant
) -> None:
    async with gateway(store) as http:
        task = await running_task(http, store, alice)
        proxy = CuttingProxy(http.base_url.port or 80)
        got: list[str] = []

        async def follow(url: str) -> None:
            async with AsyncClient(url, alice.token) as client:
                async for item in client.follow_logs(task.id):
                    got.append(item["line"])

        async def until(n: int) -> None:
            async with asyncio.timeout(10):
                while len(got) < n:
                    await asyncio.sleep(0.02)

        async with proxy.serving() as url:
            following = asyncio.create_task(follow(url))
            await append(store, task, ("stdout", "a"), ("stdout", "b"))
            await until(2)
            proxy.cut()
            await append(store, task, ("stderr", "c"))  # while the client reconnects
            await until(3)
            proxy.cut()
            await append(store, task, ("stdout", "d"))
            await finish(store, task)
            await asyncio.wait_for(following, 10)
        assert got == ["a", "b", "c", "d"]
