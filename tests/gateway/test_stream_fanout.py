"""Event streams over a real uvicorn: a notification about one task makes only that task's
streams read the store (one store subscription per gateway, fanned out by task id); SQLite's
``changed`` event (no task id) still makes streams re-read, coalesced; a workspace holds at
most ``max_streams_per_workspace`` open streams (DESIGN A13), then 429."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from conveyor.server.app import server_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import Event
from tests.gateway.conftest import Tenant, deploy, finish, start, tenant
from tests.gateway.served import served

#: Streams open at once: many more than the reads a single change may cost.
STREAMS = 150
MANY = GatewaySettings(max_streams_per_workspace=STREAMS)


class CountingStore:
    """The real store, with each method's calls counted by name."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if not callable(value):
            return value
        if not asyncio.iscoroutinefunction(value):

            def counted_sync(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return value(*args, **kwargs)

            return counted_sync

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return await value(*args, **kwargs)

        return counted


async def _enqueue(http: httpx.AsyncClient, auth: dict[str, str], n: int) -> list[str]:
    response = await http.post("/taskqueue/resize/batch", json={"tasks": [{}] * n},
                               headers=auth)
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["task_ids"]
    return ids


class Stream:
    """One open SSE response and the frames read from it so far."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.text = ""
        self._chunks: AsyncIterator[str] = response.aiter_text()

    async def until(self, needle: str, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.text:
                self.text += await anext(self._chunks)


async def _open(stack: AsyncExitStack, http: httpx.AsyncClient, path: str,
                auth: dict[str, str]) -> httpx.Response:
    return await stack.enter_async_context(http.stream("GET", path, headers=auth))


async def _open_streams(
    stack: AsyncExitStack, http: httpx.AsyncClient, auth: dict[str, str], ids: list[str]
) -> list[Stream]:
    streams = []
    for task_id in ids:
        response = await _open(stack, http, f"/v2/task/{task_id}/subscribe", auth)
        assert response.status_code == 200
        streams.append(Stream(response))
    # Each has sent its first frame: all are open and watching.
    await asyncio.gather(*(s.until('"status":"PENDING"') for s in streams))
    return streams


async def _quiet(counting: CountingStore, settle_s: float = 1.0) -> int:
    """The ``get_task`` count once it has stopped growing for ``settle_s``."""
    async with asyncio.timeout(120):
        while True:
            before = counting.calls["get_task"]
            await asyncio.sleep(settle_s)
            if counting.calls["get_task"] == before:
                return before


def _client(url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    return httpx.AsyncClient(base_url=url, limits=limits, timeout=60)


async def test_a_change_of_one_task_reads_the_store_for_that_task_only(
    store: Store, alice: Tenant
) -> None:
    counting = CountingStore(store)
    app = server_app(cast(Store, counting), MANY)
    stub = await deploy(store, alice, "resize", max_pending_tasks=1000)
    async with served(app) as url, _client(url) as http, AsyncExitStack() as stack:
        ids = await _enqueue(http, alice.auth, STREAMS)
        streams = await _open_streams(stack, http, alice.auth, ids)
        assert counting.calls["subscribe"] == 1  # one subscription for every stream
        counting.calls.clear()
        record = await start(store, stub)  # the oldest: ids[0]
        assert record.id == ids[0]
        await finish(store, record, result="7")
        await streams[0].until('"status":"COMPLETE"')
        reads = await _quiet(counting)  # time for any other stream to (wrongly) read
        assert 1 <= reads <= 4, (reads, counting.calls)
        assert all('"RUNNING"' not in s.text for s in streams[1:])


async def test_changed_events_are_coalesced(store: Store, alice: Tenant) -> None:
    """A burst of ``changed`` events (another process wrote, task unknown) costs each stream
    one read, not one per event."""
    counting = CountingStore(store)
    app = server_app(cast(Store, counting), MANY)
    await deploy(store, alice, "resize", max_pending_tasks=1000)
    async with served(app) as url, _client(url) as http, AsyncExitStack() as stack:
        ids = await _enqueue(http, alice.auth, STREAMS)
        await _open_streams(stack, http, alice.auth, ids)
        assert counting.calls["subscribe"] == 1  # one subscription for every stream
        counting.calls.clear()
        # The driver's own fan-out: where SQLite's watcher publishes commits of others.
        broadcaster = store.driver._broadcaster  # type: ignore[attr-defined]
        for _ in range(20):  # what SQLite's watcher publishes for commits of others
            broadcaster.publish(Event("changed", ""))
            await asyncio.sleep(0)
        reads = await _quiet(counting)
        # Everyone re-read, once or twice (a burst may straddle one coalescing window);
        # one read per event would be 20 per stream.
        assert STREAMS <= reads <= 3 * STREAMS, reads


async def test_another_process_finishing_a_task_reaches_its_stream(
    tmp_path: Path, sqlite_store: Store
) -> None:
    """SQLite: another connection's commit (``changed``, no task id) still ends the stream."""
    alice = await tenant(sqlite_store, "alice")
    stub = await deploy(sqlite_store, alice, "resize")
    async with served(server_app(sqlite_store, GatewaySettings())) as url, _client(url) as http:
        (task_id,) = await _enqueue(http, alice.auth, 1)
        async with AsyncExitStack() as stack:
            (stream,) = await _open_streams(stack, http, alice.auth, [task_id])
            other = open_store(f"sqlite:///{tmp_path / 'conveyor.db'}")
            await other.open()
            try:
                await finish(other, await start(other, stub))
            finally:
                await other.close()
            await stream.until('"status":"COMPLETE"', timeout=30)


async def test_a_workspace_holds_at_most_100_streams(store: Store, alice: Tenant) -> None:
    bob = await tenant(store, "bob")
    app = server_app(store, GatewaySettings())
    await deploy(store, alice, "resize", max_pending_tasks=1000)
    await deploy(store, bob, "resize")
    async with served(app) as url, _client(url) as http, AsyncExitStack() as stack:
        (task_id,) = await _enqueue(http, alice.auth, 1)
        path = f"/v2/task/{task_id}/subscribe"
        opened = [await _open(stack, http, path, alice.auth) for _ in range(100)]
        assert {r.status_code for r in opened} == {200}
        refused = await http.get(path, headers=alice.auth)
        assert refused.status_code == 429
        assert "error" in refused.json() and int(refused.headers["Retry-After"]) >= 0
        # Another workspace has its own slots.
        (bobs,) = await _enqueue(http, bob.auth, 1)
        async with http.stream("GET", f"/v2/task/{bobs}/subscribe", headers=bob.auth) as other:
            assert other.status_code == 200
        # A closed stream frees its slot.
        await opened[0].aclose()
        async with asyncio.timeout(30):
            while True:
                async with http.stream("GET", path, headers=alice.auth) as again:
                    if again.status_code == 200:
                        break
                    assert again.status_code == 429
                await asyncio.sleep(0.1)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = open_store(f"sqlite:///{tmp_path / 'conveyor.db'}")
    await store.open()
    try:
        yield store
    finally:
        with contextlib.suppress(Exception):
            await store.close()
