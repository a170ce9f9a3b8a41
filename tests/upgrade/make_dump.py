"""Make the schema-1 dumps kept in this folder: a store with a task in every status.

Run once per release whose schema the next migration must upgrade from:
``python -m tests.upgrade.make_dump`` (needs PostgreSQL at ``CONVEYOR_TEST_PG`` and ``pg_dump``).
The dumps are committed; the tests load them and never regenerate them.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import tempfile
import uuid
from pathlib import Path

import orjson

from conveyor.queue_config import QueueConfig
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Outcome
from conveyor.tasks import TaskStatus

HERE = Path(__file__).parent
#: Fixed instants, so the dumps are reproducible apart from generated ids.
T0 = 1_760_000_000.0
BUNDLE = b"PK\x05\x06" + b"\x00" * 18  # an empty zip


async def populate(store: Store) -> dict[str, str]:
    """One task per status; returns task id → status."""
    workspace = await store.ensure_workspace("upgrade")
    await store.create_token(workspace.id, "upgrade-token")
    config = QueueConfig(name="old", handler="app.py:handler", ttl=60).to_dict()
    stub = await store.deploy_stub(workspace.id, "old", config, BUNDLE)
    payload = orjson.dumps({"args": [1], "kwargs": {"k": "v"}}).decode()

    async def new(callback: str | None = None) -> str:
        [task_id] = await store.enqueue(stub, [NewTask(payload, callback, None)], 100, T0)
        return task_id

    async def running() -> tuple[str, int]:
        task_id = await new("http://receiver.test/hook")
        claimed = await store.claim(stub.id, "taskqueue-old-00000001", 1, 10**6, T0 + 1)
        assert [t.id for t in claimed] == [task_id]
        return task_id, claimed[0].fence

    statuses: dict[str, str] = {}
    # Claims take the oldest task first, so the claimed ones are made before the waiting ones,
    # and the sweep that expires one must come before the others wait.
    S = TaskStatus
    order = [S.RUNNING, S.COMPLETE, S.RETRY, S.FAILED, S.TIMEOUT, S.EXPIRED, S.PENDING,
             S.CANCELLED]
    assert set(order) == set(TaskStatus)
    for status in order:
        if status is TaskStatus.PENDING:
            task_id = await new()
        elif status is TaskStatus.EXPIRED:
            task_id = await new("http://receiver.test/hook")
            report = await store.sweep(T0 + 61)
            assert report.expired >= 1
        elif status is TaskStatus.CANCELLED:
            task_id = await new()
            await store.cancel(workspace.id, [task_id], T0 + 2)
        elif status is TaskStatus.RUNNING:
            task_id, _ = await running()
        else:
            task_id, fence = await running()
            outcome = {
                TaskStatus.COMPLETE: Outcome(task_id, fence, TaskStatus.COMPLETE,
                                             result='{"ok": 1}', outputs=[("out.txt", b"kept")]),
                TaskStatus.RETRY: Outcome(task_id, fence, TaskStatus.FAILED, retryable=True,
                                          error='{"type": "OSError", "message": "again"}'),
                TaskStatus.FAILED: Outcome(task_id, fence, TaskStatus.FAILED,
                                           error='{"type": "ValueError", "message": "bad"}'),
                TaskStatus.TIMEOUT: Outcome(task_id, fence, TaskStatus.TIMEOUT,
                                            error='{"type": "TimeoutError", "message": "slow"}'),
            }[status]
            assert await store.finish([outcome], T0 + 3) == [True]
        statuses[task_id] = status.value
    return statuses


async def _make(url: str) -> dict[str, str]:
    store = open_store(url)
    await store.open()
    try:
        assert await store.schema_version() == 1, "dumps are of schema 1"
        return await populate(store)
    finally:
        await store.close()


def sqlite_dump() -> str:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "conveyor.db"
        statuses = asyncio.run(_make(f"sqlite:///{path}"))
        with sqlite3.connect(path) as conn:
            lines = list(conn.iterdump())
    return _header(statuses) + "\n".join(lines) + "\n"


def postgres_dump() -> str:
    from tests.conftest import _admin, pg_url_for

    name = f"conveyor_dump_{uuid.uuid4().hex[:8]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        url = pg_url_for(name)
        statuses = asyncio.run(_make(url))
        dump = subprocess.run(
            ["pg_dump", "--no-owner", "--no-privileges", "--inserts", url],
            check=True, capture_output=True, text=True,
        ).stdout
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    # psql meta-commands (``\\restrict``) and settings only newer servers know are dropped,
    # so the dump loads through a plain driver into any supported server.
    kept = [
        line for line in dump.splitlines()
        if not line.startswith(("\\", "SET transaction_timeout"))
    ]
    return _header(statuses) + "\n".join(kept) + "\n"


def _header(statuses: dict[str, str]) -> str:
    return "".join(f"-- task {task_id} {status}\n" for task_id, status in statuses.items())


def main() -> None:
    (HERE / "schema1_sqlite.sql").write_text(sqlite_dump())
    (HERE / "schema1_postgres.sql").write_text(postgres_dump())


if __name__ == "__main__":
    main()
