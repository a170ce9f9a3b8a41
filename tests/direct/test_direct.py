"""The direct producer (``Client(store=...)``) on both stores: enqueue without HTTP, with the
gateway's guards, read back the gateway's task JSON, run by a real agent; and (PostgreSQL) the
enqueue inside the caller's transaction.

Client calls run in a thread (``asyncio.to_thread``): they block, and the in-process agent
shares this test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from conveyor import Client, task_queue
from conveyor.errors import ConfigError, HTTPError, PendingLimitExceeded, VersionStopped
from conveyor.server.app import server_app
from conveyor.server.store.base import Store
from conveyor.server.store.records import TaskFilter, Workspace
from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness

run = asyncio.to_thread
SQUARE = "def handler(x):\n    return x * x\n"


@pytest.fixture
async def token(store: Store, workspace: Workspace) -> str:
    return await store.create_token(workspace.id)


@pytest.fixture
def client(store_url: str, token: str) -> Client:
    return Client(store=store_url, token=token)


async def count_tasks(store: Store, workspace: Workspace) -> int:
    views, _ = await store.list_tasks(workspace.id, TaskFilter(), 1000)
    return len(views)


#: Enqueue inside the caller's transaction is PostgreSQL's: these run on it alone.
postgres_only = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)


async def test_put_runs_to_complete_and_reads_as_the_gateway_answers(
    harness: Harness, store: Store, client: Client, token: str
) -> None:
    stub = await harness.queue("square", SQUARE)
    await harness.start_agent([stub])
    task = await run(client.put, "square", 7)
    assert await run(task.result, 30) == 49
    direct = await run(client.task, task.id)
    transport = httpx.ASGITransport(server_app(store))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as http:
        auth = {"Authorization": f"Bearer {token}"}
        answer = await http.get(f"/v2/task/{task.id}/", headers=auth)
    assert answer.status_code == 200
    over_http = answer.json()
    assert direct.keys() == over_http.keys()
    for key in ("id", "status", "result", "error", "attempts", "stub", "deployment", "outputs"):
        assert direct[key] == over_http[key], key
    assert direct["status"] == "COMPLETE"
    assert task.status() is TaskStatus.COMPLETE


async def test_put_batch_stores_the_payloads_the_gateway_would(
    harness: Harness, store: Store, client: Client
) -> None:
    stub = await harness.queue("square", SQUARE)
    tasks = await run(client.put_batch, "square", [{"args": [2]}, {"x": 3}])
    assert len(tasks) == 2
    payloads = [(await store.get_task(t.id)).task.payload for t in tasks]  # type: ignore[union-attr]
    assert payloads == ['{"args":[2],"kwargs":{}}', '{"args":[],"kwargs":{"x":3}}']
    await harness.start_agent([stub])
    assert [await run(t.result, 30) for t in tasks] == [4, 9]


async def test_pending_limit_refuses_as_http_429(
    harness: Harness, store: Store, workspace: Workspace, client: Client
) -> None:
    await harness.queue("square", SQUARE, max_pending_tasks=2)
    await run(client.put, "square", 1)
    await run(client.put, "square", 2)
    with pytest.raises(HTTPError) as refused:
        await run(client.put, "square", 3)
    assert refused.value.status_code == 429
    assert isinstance(refused.value.__cause__, PendingLimitExceeded)
    with pytest.raises(HTTPError) as batch:
        await run(client.put_batch, "square", [{"x": 1}])
    assert batch.value.status_code == 429
    assert await count_tasks(store, workspace) == 2


async def test_a_stop_elsewhere_moves_the_next_put_and_a_stopped_version_is_409(
    harness: Harness, store: Store, workspace: Workspace, client: Client
) -> None:
    """The producer keeps its look-up of the queue's route as the gateway does; a stop made
    through another store object (another process for all it knows) moves its very next put."""
    v1 = await harness.queue("square", SQUARE)
    v2 = await store.deploy_stub(workspace.id, "square", v1.queue_config.to_dict(), b"v2")

    async def stub_of_put() -> str:
        task = await run(client.put, "square", 1)
        view = await store.get_task(task.id)
        assert view is not None
        return view.stub.id

    assert await stub_of_put() == v2.id  # the route is now kept
    await store.set_stub_active(workspace.id, v2.id, False)
    assert await stub_of_put() == v1.id
    await store.set_stub_active(workspace.id, v1.id, False)
    for put in (lambda: client.put("square", 1), lambda: client.put_batch("square", [{}])):
        with pytest.raises(HTTPError) as refused:
            await run(put)
        assert refused.value.status_code == 409
        assert isinstance(refused.value.__cause__, VersionStopped)
        assert "version v2 of square is stopped" in str(refused.value)
    assert await count_tasks(store, workspace) == 2


async def test_idempotency_key_returns_the_same_task(
    harness: Harness, store: Store, workspace: Workspace, client: Client
) -> None:
    await harness.queue("square", SQUARE)
    first = await run(lambda: client.put("square", 1, idempotency_key="order-1"))
    again = await run(lambda: client.put("square", 1, idempotency_key="order-1"))
    assert first.id == again.id
    batch = await run(client.put_batch, "square", [{"x": 1}, {"x": 2}], "b-1")
    batch_again = await run(client.put_batch, "square", [{"x": 1}, {"x": 2}], "b-1")
    assert [t.id for t in batch] == [t.id for t in batch_again]
    assert await count_tasks(store, workspace) == 3


async def test_a_delay_is_read_as_the_gateway_reads_it(
    harness: Harness, store: Store, workspace: Workspace, client: Client
) -> None:
    await harness.queue("square", SQUARE)
    task = await run(lambda: client.put("square", 2, delay=30))
    at = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    [batch] = await run(lambda: client.put_batch("square", [{"x": 3}], run_at=at))
    shown = await run(client.task, task.id)
    assert shown["run_at"] is not None and shown["run_at"] > shown["created_at"]
    assert (await run(client.task, batch.id))["run_at"] == at.strftime("%Y-%m-%dT%H:%M:%S.000000Z")
    with pytest.raises(HTTPError) as refused:
        await run(lambda: client.put("square", 4, delay=-1))
    assert refused.value.status_code == 400 and "Conveyor-Delay" in str(refused.value)
    assert await count_tasks(store, workspace) == 2


async def test_wrong_token_is_401_and_a_foreign_task_is_404(
    harness: Harness, store: Store, store_url: str, client: Client
) -> None:
    await harness.queue("square", SQUARE)
    with pytest.raises(HTTPError) as bad:
        await run(Client(store=store_url, token="not-a-token").put, "square", 1)
    assert bad.value.status_code == 401
    mine = await run(client.put, "square", 1)
    other = await store.ensure_workspace("other")
    stranger = Client(store=store_url, token=await store.create_token(other.id))
    with pytest.raises(HTTPError) as foreign:
        await run(stranger.task, mine.id)
    assert foreign.value.status_code == 404
    with pytest.raises(HTTPError) as no_queue:  # the queue name is the other workspace's
        await run(stranger.put, "square", 1)
    assert no_queue.value.status_code == 404
    assert (await run(stranger.cancel, mine.id))["not_found"] == [mine.id]
    assert (await store.get_task(mine.id)).task.status is TaskStatus.PENDING  # type: ignore[union-attr]


async def test_from_env_and_the_decorator_use_conveyor_store(
    harness: Harness, store: Store, store_url: str, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await harness.queue("square", SQUARE)
    monkeypatch.setenv("CONVEYOR_STORE", store_url)
    monkeypatch.setenv("CONVEYOR_TOKEN", token)
    monkeypatch.setenv("CONVEYOR_URL", "http://127.0.0.1:9")  # nothing listens: HTTP would fail

    @task_queue(name="square")
    def square(x: int) -> int:
        return x * x

    client = Client.from_env()
    assert client.store == store_url
    by_client = await run(client.put, "square", 2)
    by_decorator = await run(square.put, 3)
    for task in (by_client, by_decorator):
        view = await store.get_task(task.id)
        assert view is not None and view.task.status is TaskStatus.PENDING


@postgres_only
async def test_within_rolled_back_leaves_no_task(
    harness: Harness, store: Store, store_url: str, workspace: Workspace, client: Client
) -> None:
    stub = await harness.queue("square", SQUARE)
    await harness.start_agent([stub])

    def order_then_fail() -> str:
        with psycopg.connect(store_url) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS orders (id INT)")
            conn.commit()
            try:
                with conn.transaction():
                    conn.execute("INSERT INTO orders VALUES (1)")
                    task = client.within(conn).put("square", 5)
                    raise RuntimeError("the order failed")
            except RuntimeError:
                pass
            assert conn.execute("SELECT count(*) FROM orders").fetchone() == (0,)
            return task.id

    task_id = await run(order_then_fail)
    await asyncio.sleep(0.5)  # an agent would have taken it by now
    with pytest.raises(HTTPError) as gone:
        await run(client.task, task_id)
    assert gone.value.status_code == 404
    assert await count_tasks(store, workspace) == 0
    with psycopg.connect(store_url) as conn:  # the kept count rolled back with the task
        assert conn.execute("SELECT in_flight FROM stubs").fetchall() == [(0,)]


@postgres_only
async def test_within_committed_runs_to_complete(
    harness: Harness, store_url: str, client: Client
) -> None:
    stub = await harness.queue("square", SQUARE)
    await harness.start_agent([stub])

    def order() -> Any:
        with psycopg.connect(store_url, autocommit=True) as conn, conn.transaction():
            conn.execute("CREATE TABLE orders (id INT)")
            conn.execute("INSERT INTO orders VALUES (1)")
            task = client.within(conn).put("square", 6)
            (batch,) = client.within(conn).put_batch("square", [{"x": 4}])
            # not committed yet: another connection cannot see it
            with pytest.raises(HTTPError):
                client.task(task.id)
        return task, batch

    task, batch = await run(order)
    assert await run(task.result, 30) == 36
    assert await run(batch.result, 30) == 16


@postgres_only
async def test_within_applies_the_pending_limit_in_the_callers_transaction(
    harness: Harness, store_url: str, client: Client
) -> None:
    await harness.queue("square", SQUARE, max_pending_tasks=1)

    def two_in_one_transaction() -> int:
        with psycopg.connect(store_url) as conn:
            client.within(conn).put("square", 1)
            with pytest.raises(HTTPError) as refused:
                client.within(conn).put("square", 2)
            conn.commit()
            return refused.value.status_code

    assert await run(two_in_one_transaction) == 429


async def test_within_refuses_what_it_cannot_join(
    harness: Harness, store_url: str, client: Client
) -> None:
    await harness.queue("square", SQUARE)
    if store_url.startswith("sqlite"):
        with pytest.raises(ConfigError, match="PostgreSQL"):
            await run(client.within(object()).put, "square", 1)
        return

    def autocommit_outside_a_transaction() -> None:
        with psycopg.connect(store_url, autocommit=True) as conn:
            client.within(conn).put("square", 1)

    with pytest.raises(ConfigError, match="transaction"):
        await run(autocommit_outside_a_transaction)


def test_import_conveyor_loads_no_store() -> None:
    """The producer and the store load only for a client made with store=."""
    code = (
        "import sys, conveyor\n"
        "from conveyor import Client\n"
        "Client('http://127.0.0.1:9', token='t').close()\n"
        "parts = ('conveyor.server', 'conveyor.direct')\n"
        "loaded = [m for m in sys.modules if m.startswith(parts)]\n"
        "assert not loaded, loaded\n"
        "import conveyor.direct\n"
        "web = [m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette', 'uvicorn')]\n"
        "assert not web, web\n"
        "assert 'conveyor.server.gateway.app' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_async_client_puts_and_enqueues_within_an_async_connection(
    harness: Harness, store: Store, store_url: str, token: str, workspace: Workspace
) -> None:
    from conveyor import AsyncClient

    stub = await harness.queue("square", SQUARE)
    client = AsyncClient(store=store_url, token=token)
    task = await client.put("square", 4)
    assert (await client.task(task.id))["status"] == "PENDING"
    if not store_url.startswith("sqlite"):
        async with await psycopg.AsyncConnection.connect(store_url) as conn:
            async with conn.transaction():
                kept = await client.within(conn).put("square", 5)
            with contextlib.suppress(RuntimeError):
                async with conn.transaction():
                    await client.within(conn).put_batch("square", [{"x": 6}])
                    raise RuntimeError("rolled back")
        assert await count_tasks(store, workspace) == 2
        await harness.start_agent([stub])
        assert await kept.result(30) == 25
    else:
        await harness.start_agent([stub])
    assert await task.result(30) == 16
    await client.aclose()
