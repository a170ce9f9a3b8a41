"""The stub's kept in-flight count under batched, concurrent writes from several stores
(two agents and a gateway, each with its own connections), and how PostgreSQL keeps it."""

from __future__ import annotations

import asyncio
import random

import pytest

from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Outcome, Stub, Workspace
from conveyor.server.store.sql import SqlStore
from conveyor.tasks import TaskStatus
from tests.store.conftest import OpenStore
from tests.store.test_group_commit import in_flight_pair


async def _agent(store: Store, stub: Stub, name: str, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(rounds):
        tasks = await store.claim(stub.id, name, rng.randint(1, 8), lease_s=30)
        outcomes = []
        for task in tasks:
            status = rng.choice([TaskStatus.COMPLETE, TaskStatus.FAILED, TaskStatus.TIMEOUT])
            retryable = status is TaskStatus.FAILED and rng.random() < 0.5
            outcomes.append(Outcome(task.id, task.fence, status, "1", None, retryable))
        held = [(t.id, t.fence) for t in tasks[: rng.randint(0, 1)]]
        if held:  # one given back now and then (a container stopped)
            await store.release(held)
            outcomes = [o for o in outcomes if (o.task_id, o.fence) not in held]
        await store.finish(outcomes)
        await asyncio.sleep(0)


async def test_in_flight_stays_exact_under_concurrent_batches(
    store: Store, open_more: OpenStore, stub: Stub, ws: Workspace
) -> None:
    first, second = await open_more(), await open_more()
    ids = await store.enqueue(stub, [NewTask("{}")] * 120, 1000)

    async def gateway() -> None:
        rng = random.Random(3)
        for _ in range(15):
            ids.extend(await store.enqueue(stub, [NewTask("{}")] * rng.randint(1, 5), 1000))
            await store.cancel(ws.id, rng.sample(ids, 4))
            await asyncio.sleep(0)

    await asyncio.gather(
        _agent(first, stub, "c1", 25, 1), _agent(second, stub, "c2", 25, 2), gateway()
    )
    kept, real = await in_flight_pair(store, stub)
    assert kept == real
    await store.cancel(ws.id, ids)
    await store.sweep(now=None)
    running = await in_flight_pair(store, stub)
    assert running[0] == running[1]


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)  # SQLite: row triggers
async def test_postgres_keeps_in_flight_per_statement(store: Store, stub: Stub) -> None:
    assert isinstance(store, SqlStore)
    rows = await store.driver.read(lambda tx: tx.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'tasks'::regclass"
        " AND NOT tgisinternal AND (tgtype & 1) = 1"  # TRIGGER_TYPE_ROW
    ))
    assert rows == []
    # A batch of finishes writes the stub row once, not once per task: counted by a row
    # trigger on stubs that this test's own database gets.
    await store.driver.write(lambda tx: tx.execute(
        "CREATE TABLE stub_writes (id TEXT);"
        " CREATE FUNCTION count_stub_write() RETURNS trigger LANGUAGE plpgsql AS"
        " 'BEGIN INSERT INTO stub_writes VALUES (NEW.id); RETURN NULL; END';"
        " CREATE TRIGGER stub_writes AFTER UPDATE ON stubs FOR EACH ROW"
        " EXECUTE FUNCTION count_stub_write()"
    ))
    await store.enqueue(stub, [NewTask("{}")] * 10, 100)
    tasks = await store.claim(stub.id, "c1", 10, lease_s=30)
    await store.finish([Outcome(t.id, t.fence, TaskStatus.COMPLETE, "1") for t in tasks[:6]]
                       + [Outcome(t.id, t.fence, TaskStatus.TIMEOUT) for t in tasks[6:]])
    writes = await store.driver.read(lambda tx: tx.execute("SELECT COUNT(*) FROM stub_writes"))
    # enqueue adds its 10 (one write), the claim none, each status group of the finish one
    assert writes == [(3,)]
    assert await in_flight_pair(store, stub) == (0, 0)
