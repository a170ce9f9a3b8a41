"""A store made by schema 1 (dumps kept here, with a task in every status) opens under the
current code, which applies every later migration in place, and keeps every task readable
with the status it had. Protects future migrations: add to the checks, never regenerate."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from conveyor.server.store import open_store
from conveyor.server.store.sql import load_migrations
from conveyor.tasks import TaskStatus

HERE = Path(__file__).parent
TASK_LINE = re.compile(r"^-- task (\S+) (\w+)$", re.M)


def _expected(dump: str) -> dict[str, str]:
    return dict(TASK_LINE.findall(dump))


def test_dumps_hold_every_status() -> None:
    for name in ("schema1_sqlite.sql", "schema1_postgres.sql"):
        statuses = set(_expected((HERE / name).read_text()).values())
        assert statuses == {s.value for s in TaskStatus}, name


def _load_sqlite(tmp_path: Path) -> str:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((HERE / "schema1_sqlite.sql").read_text())
    return f"sqlite:///{path}"


def _load_postgres(url: str) -> str:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((HERE / "schema1_postgres.sql").read_text().encode())
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def old_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "sqlite":
        return _load_sqlite(tmp_path), "schema1_sqlite.sql"
    return _load_postgres(request.getfixturevalue("pg_empty_url")), "schema1_postgres.sql"


async def test_schema1_store_migrates_and_keeps_every_task(
    old_store_url: tuple[str, str],
) -> None:
    url, dump = old_store_url
    expected = _expected((HERE / dump).read_text())
    dialect = "sqlite" if url.startswith("sqlite") else "postgres"
    store = open_store(url)
    await store.open()  # applies every migration after 1
    try:
        assert await store.schema_version() == load_migrations(dialect)[-1].version
        workspace = await store.ensure_workspace("upgrade")
        assert (await store.authenticate("upgrade-token")) == workspace
        for task_id, status in expected.items():
            view = await store.get_task(task_id, workspace.id)
            assert view is not None, task_id
            assert view.task.status.value == status, task_id
            assert view.stub.name == "old"
            assert view.stub.active and view.task.replay_of is None  # 0013: versions
            assert view.task.run_at is None  # 0012: time
            if status == "COMPLETE":
                assert view.task.result is not None
                assert [o.name for o in view.outputs] == ["out.txt"]
        from conveyor.server.store.records import TaskFilter

        listed, _ = await store.list_tasks(workspace.id, TaskFilter(), limit=100)
        assert {v.task.id for v in listed} == set(expected)
        # The migrated store still works: the waiting tasks can be claimed and finished.
        stub = (await store.list_stubs(workspace.id))[0]
        claimed = await store.claim(stub.id, "taskqueue-new-00000001", 10, 60)
        waiting = {t for t, s in expected.items() if s in ("PENDING", "RETRY")}
        assert {t.id for t in claimed} == waiting
        # 0012 made the stubs table again (SQLite): its rows, counts and triggers hold.
        [load] = await store.stub_loads([stub.id])
        assert (load.runnable, load.running) == (0, len(waiting) + 1)  # + the one RUNNING
        schedule = await store.deploy_stub(workspace.id, "nightly", {"when": "@daily"}, b"x")
        assert schedule.type == "schedule/deployment"
    finally:
        await store.close()
