"""PostgreSQL's quick calls (status reads, look-ups, one-statement enqueues and claims) use a
connection held out of the pool; one that breaks is replaced, and the pool serves meanwhile."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from conveyor.errors import StoreUnavailable
from conveyor.server.store.base import Store
from conveyor.server.store.postgres import PostgresDriver
from conveyor.server.store.records import NewTask, Stub, Workspace
from conveyor.server.store.sql import SqlStore

pytestmark = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)


def held_pid(store: Store) -> int | None:
    assert isinstance(store, SqlStore) and isinstance(store.driver, PostgresDriver)
    held = store.driver._held
    return None if held is None or held.closed else held.info.backend_pid


async def test_quick_calls_use_the_held_connection(
    store: Store, stub: Stub, ws: Workspace, store_url: str
) -> None:
    pid = held_pid(store)
    assert pid is not None
    (task_id,) = await store.enqueue(stub, [NewTask("{}")], 10)
    with psycopg.connect(store_url, autocommit=True) as conn:
        # The enqueue was one statement on the held connection: it ran last there.
        found = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]
        ).fetchone()
    assert found is not None and "INSERT INTO tasks" in found[0]
    assert await store.get_task(task_id, ws.id) is not None


async def test_a_broken_held_connection_is_replaced(
    store: Store, stub: Stub, ws: Workspace, store_url: str
) -> None:
    (task_id,) = await store.enqueue(stub, [NewTask("{}")], 10)
    before = held_pid(store)
    with psycopg.connect(store_url, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", [before])
    deadline = time.monotonic() + 10
    failures = 0
    while True:  # at most the call that meets the dead connection fails
        try:
            assert await store.get_task(task_id, ws.id) is not None
        except StoreUnavailable:
            failures += 1
        now = held_pid(store)
        if now is not None and now != before:
            break
        assert time.monotonic() < deadline, "the held connection was not replaced"
        await asyncio.sleep(0.05)
    assert failures <= 1
    assert await store.get_task(task_id, ws.id) is not None
    assert len(await store.enqueue(stub, [NewTask("{}")], 10)) == 1
