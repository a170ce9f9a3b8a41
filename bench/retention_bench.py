"""Retention under load: ``python bench/retention_bench.py --backend sqlite|postgres|all``.

Bulk-loads ``--rows`` finished tasks that ended 30 days ago (each with an attempt row, two log
lines and its log totals: five rows per task), then enqueues one task at a time, as a gateway
does, while the retention chore (``Retention.run_once`` with a 7-day retention, the pass every
``serve``, ``server`` and ``worker`` runs) deletes them all: in another process (``worker`` or
``server`` beside the gateway), and with ``--same-process`` in the enqueuer's own (``serve``).
Reports enqueue latency p50 / p99 / max before and during the deletion, and the deletion's
rate; the target is p99 under 50 ms while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Callable, Sequence

import psycopg
from store_bench import backend_url

from conveyor.server.retention import Retention
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Stub

TARGET_P99_MS = 50.0
DAY_US = 86_400 * 1_000_000
RETENTION_S = 7 * 86_400.0
#: Seconds between two enqueues of the measuring loop (about 200 a second).
GAP_S = 0.005

_TASKS = """INSERT INTO tasks (id, workspace_id, stub_id, status, payload, attempt, fence,
    max_retries, timeout_s, ttl_s, retry_backoff_s, container_id, created_at, started_at,
    ended_at, updated_at, runnable_at, result)
SELECT {id}, {ws}, {stub}, 'COMPLETE', '{{"args":[],"kwargs":{{}}}}', 1, 1, 3, 3600, 7200, 0,
    'bench', {t}, {t}, {t}, {t}, {t}, '{{"ok":true}}' FROM {rows}"""
_ATTEMPTS = """INSERT INTO task_attempts (task_id, attempt, container_id, started_at, ended_at,
    outcome) SELECT id, 1, 'bench', ended_at, ended_at, 'COMPLETE' FROM tasks"""
_LOGS = """INSERT INTO task_logs (task_id, attempt, stream, at, line)
SELECT id, 1, 'stdout', ended_at, 'line ' || n FROM tasks, (SELECT 1 AS n UNION ALL SELECT 2) l"""
_TOTALS = "INSERT INTO task_log_totals (task_id, lines, bytes) SELECT id, 2, 12 FROM tasks"


def bulk_load(url: str, stub: Stub, rows: int) -> float:
    """``rows`` tasks ended 30 days ago, with their attempt, lines and totals; seconds taken."""
    started = time.perf_counter()
    t = int(time.time() * 1e6) - 30 * DAY_US
    if url.startswith("sqlite"):
        import sqlite3

        tasks = _TASKS.format(
            id="printf('%08x-0000-4000-8000-%012x', i, i)", ws="?", stub="?", t=t,
            rows="(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
            f" WHERE i < {rows}) SELECT i FROM n)",
        )
        with sqlite3.connect(url[len("sqlite:///"):]) as conn:
            conn.execute(tasks, [stub.workspace_id, stub.id])
            for sql in (_ATTEMPTS, _LOGS, _TOTALS):
                conn.execute(sql)
    else:
        tasks = _TASKS.format(id="gen_random_uuid()::text", ws="%s", stub="%s", t=t,
                              rows=f"generate_series(1, {rows})")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(tasks, [stub.workspace_id, stub.id])
            for sql in (_ATTEMPTS, _LOGS, _TOTALS):
                conn.execute(sql)
            conn.execute("ANALYZE")
    return time.perf_counter() - started


async def _prune_all(url: str) -> tuple[int, float]:
    store = open_store(url)
    await store.open()
    try:
        started = time.perf_counter()
        deleted = await Retention(store, RETENTION_S).run_once()
        return deleted, time.perf_counter() - started
    finally:
        await store.close()


def _prune_in_process(url: str, answer: multiprocessing.Queue[tuple[int, float]]) -> None:
    answer.put(asyncio.run(_prune_all(url)))


async def enqueue_latencies(store: Store, stub: Stub, done: Callable[[], bool]) -> list[float]:
    """Milliseconds of each lone enqueue, one every ``GAP_S``, until ``done()``."""
    samples: list[float] = []
    while not done():
        started = time.perf_counter()
        await store.enqueue(stub, [NewTask('{"args":[],"kwargs":{}}')], 10**7)
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(GAP_S)
    return samples


def for_seconds(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() > deadline


def summary(samples: Sequence[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (f"p50 {statistics.median(ordered):.2f} ms, p99 {p99:.2f} ms,"
            f" max {ordered[-1]:.1f} ms ({len(ordered):,} enqueues)")


async def run(backend: str, rows: int, same_process: bool) -> list[tuple[str, str, str]]:
    results: list[tuple[str, str, str]] = []
    async with backend_url(backend) as url:
        store = open_store(url)
        await store.open()
        ws = await store.ensure_workspace("bench")
        history = await store.deploy_stub(ws.id, "history", {}, b"x")
        live = await store.deploy_stub(ws.id, "live", {"max_pending_tasks": 10**6}, b"x")
        seconds = bulk_load(url, history, rows)
        results.append((backend, f"bulk load {rows:,} old tasks (x5 rows)", f"{seconds:.1f} s"))
        results.append((backend, "enqueue, nothing deleted", summary(
            await enqueue_latencies(store, live, for_seconds(5.0)))))
        if same_process:
            pruning: asyncio.Future[tuple[int, float]] = asyncio.ensure_future(_prune_all(url))
            during = await enqueue_latencies(store, live, pruning.done)
            deleted, took = pruning.result()
            where = "same process"
        else:
            spawn = multiprocessing.get_context("spawn")
            queue: multiprocessing.Queue[tuple[int, float]] = spawn.Queue()
            worker = spawn.Process(target=_prune_in_process, args=(url, queue))
            worker.start()
            done = asyncio.get_running_loop().run_in_executor(None, worker.join)
            during = await enqueue_latencies(store, live, done.done)
            deleted, took = queue.get()
            where = "another process"
        results.append((backend, f"enqueue while deleting ({where})", summary(during)))
        results.append((backend, "deleted by the retention pass",
                        f"{deleted:,} tasks in {took:.1f} s ({deleted / took:,.0f}/s)"))
        p99 = sorted(during)[min(len(during) - 1, int(len(during) * 0.99))]
        verdict = "met" if p99 < TARGET_P99_MS else "MISSED"
        results.append((backend, f"target p99 < {TARGET_P99_MS:.0f} ms", verdict))
        await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--same-process", action="store_true",
                        help="delete in the enqueuer's process (as serve does)")
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    rows: list[tuple[str, str, str]] = []
    for backend in backends:
        rows.extend(asyncio.run(run(backend, args.rows, args.same_process)))
    print("| backend | measure | result |\n|---|---|---|")  # pastes into docs/benchmarks.md
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
