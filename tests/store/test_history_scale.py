"""Hot statements stay off the stored history: a million finished tasks cost them nothing.

SQLite counts the virtual-machine instructions a statement runs (``set_progress_handler``),
which is a deterministic measure of the rows it walks: no timing, no flakiness. The history is
100,000 COMPLETE tasks of the same stub; a statement that scanned it would run millions of
instructions, one that uses its index runs a few hundred.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from conveyor.server.store import open_store
from conveyor.server.store.records import NewTask, Outcome
from conveyor.server.store.sql import SqlStore
from conveyor.server.store.sqlite import SqliteDriver
from conveyor.tasks import TaskStatus

HISTORY = 100_000
#: Instructions per progress callback, and the most callbacks an operation may take: far above
#: an indexed statement, far below a scan of the history.
STEP = 1000
MOST = 20

T0 = 1_795_824_000.0


async def test_hot_operations_do_not_walk_the_history(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/c.db")
    assert isinstance(store, SqlStore) and isinstance(store.driver, SqliteDriver)
    await store.open()
    try:
        ws = await store.ensure_workspace("acme")
        stub = await store.deploy_stub(ws.id, "q", {"name": "q", "ttl": 60}, b"x")
        driver = store.driver

        def load(conn: sqlite3.Connection) -> None:
            conn.execute(
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
                " INSERT INTO tasks (id, workspace_id, stub_id, status, payload, max_retries,"
                " timeout_s, ttl_s, retry_backoff_s, created_at, started_at, ended_at,"
                " updated_at, runnable_at, result) SELECT lower(hex(randomblob(16))), ?, ?,"
                " 'COMPLETE', '{}', 3, 60, 60, 0, 1, 1, 1, 1, 1, '1' FROM n",
                [HISTORY, ws.id, stub.id],
            )

        await driver.write(lambda tx: _sync(load, tx))
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        for conn in (driver._write_conn, driver._read_conn):
            assert conn is not None
            await driver.call(conn.set_progress_handler, count, STEP)

        async def cost(operation: Callable[[], Awaitable[Any]]) -> int:
            steps[0] = 0
            await operation()
            return steps[0]

        (task_id,) = await store.enqueue(stub, [NewTask("{}")], 10**9, now=T0)
        costs = {
            "enqueue": await cost(lambda: store.enqueue(stub, [NewTask("{}")], 10**9, now=T0)),
            "get_task": await cost(lambda: store.get_task(task_id, ws.id)),
            "stub_loads": await cost(lambda: store.stub_loads([stub.id], now=T0)),
            "claim": await cost(lambda: store.claim(stub.id, "c1", 1, 10, now=T0)),
            "sweep": await cost(lambda: store.sweep(now=T0 + 5)),
        }
        claimed = await store.claim(stub.id, "c1", 1, 10, now=T0)
        costs["finish"] = await cost(lambda: store.finish(
            [Outcome(claimed[0].id, claimed[0].fence, TaskStatus.COMPLETE, "1")], now=T0))
        assert {name: n for name, n in costs.items() if n > MOST} == {}, costs
    finally:
        await store.close()


async def _sync(fn: Callable[[sqlite3.Connection], None], tx: Any) -> None:
    fn(tx._conn)
