"""Store micro-benchmark: ``python bench/store_bench.py --backend sqlite|postgres|all``.

Measures, per backend: enqueue one task at a time, enqueue in batches of 100, claim + finish
in batches of 100, and ``get_task`` latency with 1,000 and with 1,000,000 tasks in the table.
The million rows are bulk-loaded by one direct SQL ``INSERT … SELECT`` (a recursive CTE in
SQLite, ``generate_series`` in PostgreSQL) as COMPLETE history of the same queue, not through
``enqueue``: it measures reads against a big table, not the load itself.

``--growth`` measures instead, at 10^3, 10^5 and 10^6 stored tasks (loaded the same way, 1 %
of them PENDING tasks delayed by an hour, as delayed tasks wait), in 5 rounds per level: 200
single enqueues (one in ten delayed, where the store has delays) and their CPU time in this
process, the p50 of 50 status reads of stored tasks, and 50 tasks claimed one at a time and
finished past the delayed ones of the same queue; the best round and the median. The same
script runs against an earlier conveyor (``PYTHONPATH=<its src>``) for a before/after.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import psycopg

from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Outcome, Stub
from conveyor.tasks import TaskStatus

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
BULK_ROWS = 1_000_000
MAX_PENDING = 1_000_000

SQLITE_BULK = """
WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last)
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
FROM generate_series(%(first)s::bigint, %(last)s::bigint)
"""
#: Delayed tasks as they wait: PENDING, runnable (and expiring) an hour after their enqueue.
SQLITE_DELAYED = """
WITH RECURSIVE n(i) AS (SELECT :first UNION ALL SELECT i + 1 FROM n WHERE i < :last)
INSERT INTO tasks (id, workspace_id, stub_id, status, payload, max_retries, timeout_s, ttl_s,
    retry_backoff_s, created_at, updated_at, runnable_at, expires_at)
SELECT printf('%08x-0000-4000-9000-%012x', i, i), :ws, :stub, 'PENDING',
    '{"args":[],"kwargs":{}}', 3, 3600, 7200, 0, :t, :t, :later, :later + 7200000000 FROM n
"""
POSTGRES_DELAYED = """
INSERT INTO tasks (id, workspace_id, stub_id, status, payload, max_retries, timeout_s, ttl_s,
    retry_backoff_s, created_at, updated_at, runnable_at, expires_at)
SELECT gen_random_uuid()::text, %(ws)s, %(stub)s, 'PENDING', '{"args":[],"kwargs":{}}',
    3, 3600, 7200, 0, %(t)s, %(t)s, %(later)s, %(later)s + 7200000000
FROM generate_series(%(first)s::bigint, %(last)s::bigint)
"""
GROWTH_LEVELS = (1_000, 100_000, 1_000_000)
#: Rounds per level, and enqueues per round (a quarter as many reads and claims): each figure
#: is the best round, less disturbed by a shared machine than one long run, and the median.
ROUNDS, ROUND = 5, 200
#: Of the stored tasks, the share delayed; of the measured enqueues, one in this many.
DELAYED_SHARE, DELAYED_EVERY = 0.01, 10


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


def bulk_load(url: str, stub: Stub, rows: int = BULK_ROWS, first: int = 1,
              delayed: bool = False) -> float:
    """Insert ``rows`` tasks (numbered from ``first``) with one statement: COMPLETE history,
    or PENDING tasks delayed by an hour; returns seconds taken."""
    started = time.perf_counter()
    t = int(time.time() * 1e6)
    params = {"ws": stub.workspace_id, "stub": stub.id, "t": t, "later": t + 3_600_000_000,
              "first": first, "last": first + rows - 1}
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url[len("sqlite:///"):]) as conn:
            conn.execute(SQLITE_DELAYED if delayed else SQLITE_BULK, params)
            conn.execute("ANALYZE")
    else:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(POSTGRES_DELAYED if delayed else POSTGRES_BULK, params)
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


@asynccontextmanager
async def bench_queue(backend: str) -> AsyncIterator[tuple[str, Store, Stub]]:
    """A fresh store of ``backend``, opened, with one queue of the highest pending limit."""
    async with backend_url(backend) as url:
        store = open_store(url)
        await store.open()
        ws = await store.ensure_workspace("bench")
        stub = await store.deploy_stub(ws.id, "bench", {"max_pending_tasks": MAX_PENDING}, b"x")
        try:
            yield url, store, stub
        finally:
            await store.close()


async def run(backend: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    async with bench_queue(backend) as (url, store, stub):
        payload = '{"args":[1],"kwargs":{}}'

        single = 1000
        started = time.perf_counter()
        for _ in range(single):
            await store.enqueue(stub, [NewTask(payload)], MAX_PENDING)
        rate = single / (time.perf_counter() - started)
        rows.append((backend, "enqueue, one at a time", f"{rate:,.0f} tasks/s"))

        batches = 100
        started = time.perf_counter()
        for _ in range(batches):
            await store.enqueue(stub, [NewTask(payload)] * 100, MAX_PENDING)
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
        live = await store.enqueue(stub, [NewTask(payload)] * 50, MAX_PENDING)
        page_ids = live[:10]
        total = single + batches * 100 + 50
        latency = await read_latency_ms(store, page_ids)
        rows.append((backend, f"get_task median, {total:,} tasks", f"{latency:.3f} ms"))
        seconds = bulk_load(url, stub)
        measure = f"bulk load {BULK_ROWS:,} rows (one INSERT…SELECT)"
        rows.append((backend, measure, f"{seconds:.1f} s"))
        latency = await read_latency_ms(store, page_ids)
        rows.append((backend, f"get_task median, {total + BULK_ROWS:,} tasks", f"{latency:.3f} ms"))
    return rows


async def growth(backend: str) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    delays = "run_at" in NewTask.__dataclass_fields__  # an earlier conveyor has none
    async with bench_queue(backend) as (url, store, stub):
        stored = 0
        for level in GROWTH_LEVELS:
            delayed = int((level - stored) * DELAYED_SHARE)
            bulk_load(url, stub, level - stored - delayed, first=stored + 1)
            bulk_load(url, stub, delayed, first=stored + 1, delayed=True)
            stored = level
            sample = await _stored_ids(url, ROUND * 5)
            enqueue, cpu, reads, claims = [], [], [], []
            for r in range(ROUNDS):
                seconds, cpu_s = await _enqueues(store, stub, ROUND, delays)
                enqueue.append(ROUND / seconds)
                cpu.append(cpu_s / ROUND * 1e6)
                reads.append(await read_latency_ms(store, sample[r::ROUNDS], ROUND // 4))
                claims.append(await _claims(store, stub, ROUND // 4))
            at = f"{level:,} stored"
            rows += [
                (backend, f"enqueue one at a time, {at}", _best_median(enqueue, "/s", max)),
                (backend, f"enqueue CPU of this process, {at}", _best_median(cpu, " µs", min)),
                (backend, f"status read p50, {at}", _best_median(reads, " ms", min, 3)),
                (backend, f"claim + finish one at a time, {at}", _best_median(claims, "/s", max)),
            ]
    return rows


async def _enqueues(store: Store, stub: Stub, n: int, delays: bool) -> tuple[float, float]:
    """Wall and CPU seconds of ``n`` single enqueues, one in ``DELAYED_EVERY`` delayed (when
    the store has delays)."""
    payload = '{"args":[1],"kwargs":{}}'
    later = NewTask(payload, run_at=int((time.time() + 3600) * 1e6)) if delays else None
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        task = later if later is not None and i % DELAYED_EVERY == 0 else NewTask(payload)
        await store.enqueue(stub, [task], MAX_PENDING)
    return time.perf_counter() - wall, time.process_time() - cpu


async def _claims(store: Store, stub: Stub, n: int) -> float:
    """Tasks per second claimed one at a time and finished, past the delayed ones."""
    started, done = time.perf_counter(), 0
    while done < n and (batch := await store.claim(stub.id, "bench", 1, 60)):
        await store.finish([Outcome(batch[0].id, batch[0].fence, TaskStatus.COMPLETE,
                                    result="1")])
        done += 1
    return done / (time.perf_counter() - started)


def _best_median(
    values: list[float], unit: str, best: Callable[[list[float]], float], digits: int = 0
) -> str:
    """The best of the rounds (the least disturbed by other load) and their median."""
    return f"{best(values):,.{digits}f}{unit} (median {statistics.median(values):,.{digits}f})"


async def _stored_ids(url: str, n: int) -> list[str]:
    """``n`` ids of stored COMPLETE tasks, picked at random."""
    sql = "SELECT id FROM tasks WHERE status = 'COMPLETE'"
    if url.startswith("sqlite"):
        import sqlite3

        with sqlite3.connect(url[len("sqlite:///"):]) as conn:
            ids = [row[0] for row in conn.execute(sql)]
    else:
        with psycopg.connect(url) as conn:
            ids = [row[0] for row in conn.execute(sql)]
    return random.Random(7).sample(ids, min(n, len(ids)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--growth", action="store_true",
                        help="enqueue, status read and claim at 10^3, 10^5, 10^6 stored tasks")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    rows: list[tuple[str, str, str]] = []
    for backend in backends:
        rows.extend(asyncio.run(growth(backend) if args.growth else run(backend)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    print(f"{'backend':<{widths[0]}}  {'measure':<{widths[1]}}  result")
    for row in rows:
        print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}")


if __name__ == "__main__":
    main()
