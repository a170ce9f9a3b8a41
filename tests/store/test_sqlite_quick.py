"""SQLite's quick calls: a status read, a queue look-up and one enqueue run on the event loop's
thread (no hop to a store thread), and go over to the thread when the file is busy, so a
lock held by another process never blocks the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from conveyor.server.store import open_store
from conveyor.server.store.records import NewTask
from conveyor.server.store.sql import SqlStore
from conveyor.server.store.sqlite import SqliteDriver
from tests.store.conftest import CONFIG


async def _open(path: Path) -> tuple[SqlStore, SqliteDriver]:
    store = open_store(f"sqlite:///{path}")
    await store.open()
    assert isinstance(store, SqlStore) and isinstance(store.driver, SqliteDriver)
    return store, store.driver


def _hops(driver: SqliteDriver) -> tuple[int, int]:
    writer, reader = driver._writer, driver._reader
    assert writer is not None and reader is not None
    return writer.hops, reader.hops


async def test_quick_calls_make_no_hop(tmp_path: Path) -> None:
    store, driver = await _open(tmp_path / "c.db")
    try:
        ws = await store.ensure_workspace("acme")
        await store.deploy_stub(ws.id, "q", CONFIG, b"def q(): pass\n")
        before = _hops(driver)
        for n in range(20):
            stub = await store.resolve_stub(ws.id, "q")
            assert stub is not None
            (task_id,) = await store.enqueue(stub, [NewTask(f'{{"n": {n}}}')], 1000)
            view = await store.get_task(task_id, ws.id)
            assert view is not None and view.task.payload == f'{{"n": {n}}}'
        assert _hops(driver) == before
    finally:
        await store.close()


async def test_a_busy_file_sends_the_call_to_its_thread(tmp_path: Path) -> None:
    """Another connection holds the write lock for 0.5 s: the enqueue waits for it on the
    writer thread while the event loop keeps running, then succeeds."""
    store, driver = await _open(tmp_path / "c.db")
    other = sqlite3.connect(tmp_path / "c.db", isolation_level=None, check_same_thread=False)
    try:
        ws = await store.ensure_workspace("acme")
        stub = await store.deploy_stub(ws.id, "q", CONFIG, b"def q(): pass\n")
        other.execute("BEGIN IMMEDIATE")
        release = threading.Timer(0.5, lambda: other.execute("COMMIT"))
        release.start()
        ticks = 0

        async def ticking() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(ticking())
        started = time.monotonic()
        writes_before, _ = _hops(driver)
        (task_id,) = await store.enqueue(stub, [NewTask("{}")], 1000)
        waited = time.monotonic() - started
        ticker.cancel()
        release.join()
        assert waited >= 0.4  # it really waited for the lock
        assert ticks >= 10  # ... without blocking the loop meanwhile
        assert _hops(driver)[0] > writes_before  # on the writer thread
        assert await store.get_task(task_id, ws.id) is not None
    finally:
        other.close()
        await store.close()
