"""Store micro-benchmark: ``python bench/store_bench.py --backend sqlite|postgres|all``.

Measures, per backend: enqueue one task at a time, enqueue in batches of 100, claim + finish
in batches of 100, and ``get_task`` latency with 1,000 and with 1,000,000 tasks in the table.
The million rows are bulk-loaded by one direct SQL ``INSERT … SELECT`` (a recursive CTE in
SQLite, ``generate_series`` in PostgreSQL) as COMPLETE history of the same queue, not through
``enqueue``: it measures reads against a big table, not the load itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Outcome, Stub
from conveyor.tasks import TaskStatus

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BULK_ROWS = 1_000_000

SQLITE_BULK = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
INSERT INTO tasks (id, workspace_id, stub_id, status, payload, attempt, fence, max_retries,
    timeout_s, ttl_s, retry_backoff_s, container_id, created_at, started_at, ended_at,
    updated_at, runnable_at, result)
SELECT printf('%08x-0000-4000-8000-%012x', i, i), :ws, :stub, 'COMPLETE',
    '{"args":[],"kwargs":{}}', 1, 1, 3, 3600, 7200, 0, 'bench', :t, :t, :t, :t, :t,
    '{"ok":true}' FROM n
"""
POSTGRES_BULK = """
INSERT INTO tasks (id, workspace_id, stub_id, status, payload, attempt, fence, max_retries,
    timeout_s, ttl_s, retry_backoff_s, container_id, created_at, started_at, ended_at,
    updated_at, runnable_at, result)
SELECT gen_random_uuid()::text, %(ws)s, %(stub)s, 'COMPLETE', '{"args":[],"kwargs":{}}',
    1, 1, 3, 3600, 7200, 0, 'bench', %(t)s, %(t)s, %(t)s, %(t)s, %(t)s, '{"ok":true}'
FROM generate_series(1, %(rows)s)
"""


@asynccontextmanager
async def backend_url(backend: str) -> AsyncIterator[str]:
    if backend == "sqlite":
        with tempfile.TemporaryDirectory() as folder:
            yield f"sqlite:///{folder}/bench.db"
        return
    name = f"conveyor_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def bulk_load(url: str, stub: Stub) -> float:
    """Insert ``BULK_ROWS`` COMPLETE tasks with one statement; returns seconds taken."""
    started = time.perf_counter()
    params = {"ws": stub.workspace_id, "stub": stub.id, "t": int(time.time() * 1e6),
              "rows": BULK_ROWS}
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url[len("sqlite:///"):]) as conn:
            conn.execute(SQLITE_BULK, params)
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(POSTGRES_BULK, params)
            conn.execute("ANALYZE tasks")
    return time.perf_counter() - started


async def read_latency_ms(store: Store, ids: list[str], rounds: int = 500) -> float:
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        view = await store.get_task(ids[i % len(ids)])
        samples.append(time.perf_counter() - started)
        assert view is not None
    return statistics.median(samples) * 1000


async def run(backend: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    async with backend_url(backend) as url:
        store = open_store(url)
        await store.open()
        ws = await store.ensure_workspace("bench")
        stub = await store.deploy_stub(ws.id, "bench", {"max_pending_tasks": 10**7}, b"x")
        payload = '{"args":[1],"kwargs":{}}'

        single = 1000
        started = time.perf_counter()
        for _ in range(single):
            await store.enqueue(stub, [NewTask(payload)], 10**7)
        rate = single / (time.perf_counter() - started)
        rows.append((backend, "enqueue, one at a time", f"{rate:,.0f} tasks/s"))

        batches = 100
        started = time.perf_counter()
        for _ in range(batches):
            await store.enqueue(stub, [NewTask(payload)] * 100, 10**7)
        rate = batches * 100 / (time.perf_counter() - started)
        rows.append((backend, "enqueue, batches of 100", f"{rate:,.0f} tasks/s"))

        done = 0
        started = time.perf_counter()
        while batch := await store.claim(stub.id, "bench", 100, 60):
            applied = await store.finish(
                [Outcome(t.id, t.fence, TaskStatus.COMPLETE, result='{"ok":true}') for t in batch]
            )
            done += sum(applied)
        rate = done / (time.perf_counter() - started)
        rows.append((backend, "claim + finish, batches of 100", f"{rate:,.0f} tasks/s"))

        # A small live queue, so queue_depth is counted as it would be in real use.
        live = await store.enqueue(stub, [NewTask(payload)] * 50, 10**7)
        page_ids = live[:10]
        total = single + batches * 100 + 50
        latency = await read_latency_ms(store, page_ids)
        rows.append((backend, f"get_task median, {total:,} tasks", f"{latency:.3f} ms"))
        seconds = bulk_load(url, stub)
        measure = f"bulk load {BULK_ROWS:,} rows (one INSERT…SELECT)"
        rows.append((backend, measure, f"{seconds:.1f} s"))
        latency = await read_latency_ms(store, page_ids)
        rows.append((backend, f"get_task median, {total + BULK_ROWS:,} tasks", f"{latency:.3f} ms"))
        await store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    rows: list[tuple[str, str, str]] = []
    for backend in backends:
        rows.extend(asyncio.run(run(backend)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"{'backend':<{widths[0]}}  {'measure':<{widths[1]}}  result")
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}")


if __name__ == "__main__":
    main()
