"""Procrastinate on its own PostgreSQL database ``bench_procrastinate`` (async tasks)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import psycopg
from bench.peers.adapters.base import SLEEP_S, Adapter, mark_started, mark_stopped
from bench.peers.harness import MARKERS, PG_ADMIN, PROCS, pg_url, venv_bin, wait_until
from procrastinate import App, PsycopgConnector

DB = "bench_procrastinate"
app = App(connector=PsycopgConnector(conninfo=pg_url(DB)))


@app.task(name="noop")
async def noop(n: int) -> int:
    return n


@app.task(name="stamp")
async def stamp(key: str) -> None:
    MARKERS.set(f"stamp:{key}", time.time())


@app.task(name="sleeper")
async def sleeper(key: str) -> None:
    mark_started(key)
    try:
        await asyncio.sleep(SLEEP_S)
    finally:
        mark_stopped(key)


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


class ProcrastinateAdapter(Adapter):
    name = "procrastinate"
    workers_note = "2 `procrastinate worker` processes (default concurrency 1 each)"
    has_bulk = True
    can_cancel = True
    durable = True

    def setup(self) -> None:
        _admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        _admin(f"CREATE DATABASE {DB}")
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(app.open_async())
        self.loop.run_until_complete(app.schema_manager.apply_schema_async())
        self.sql = psycopg.connect(pg_url(DB), autocommit=True)
        self.count = 0

    def teardown(self) -> None:
        self.stop_workers()
        self.sql.close()
        self.loop.run_until_complete(app.close_async())
        self.loop.close()
        _admin(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")

    def reset(self) -> None:
        self.sql.execute("TRUNCATE procrastinate_jobs CASCADE")

    def start_workers(self) -> None:
        argv = [venv_bin("procrastinate"), "--app", f"{__name__}.app", "worker"]
        self.workers = [
            PROCS.start(argv, self.logs / f"procrastinate-worker-{i}.log") for i in range(2)
        ]

    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        async def go() -> list[int]:
            return [await noop.defer_async(n=i) for i in args]

        return self.loop.run_until_complete(go())

    def enqueue_bulk(self, args: Sequence[int]) -> list[Any]:
        async def go() -> list[int]:
            ids: list[int] = []
            for start in range(0, len(args), 500):
                chunk = args[start : start + 500]
                ids += await noop.batch_defer_async(*({"n": i} for i in chunk))
            return ids

        return self.loop.run_until_complete(go())

    def _status(self, job_id: int) -> str:
        jobs = self.loop.run_until_complete(app.job_manager.list_jobs_async(id=job_id))
        return jobs[0].status if jobs else ""

    def is_complete(self, handle: Any) -> bool:
        return self._status(handle) == "succeeded"

    def lookup(self, handle: Any) -> object:
        return self._status(handle)

    def stamp(self) -> float:
        self.count += 1
        key = f"procrastinate-{self.count}"
        self.loop.run_until_complete(stamp.defer_async(key=key))
        returned = time.time()
        wait_until(lambda: MARKERS.get(f"stamp:{key}") is not None, 30, "procrastinate stamp",
                   0.001)
        return float(MARKERS.get(f"stamp:{key}") or 0) - returned

    def cancel_one(self, key: str) -> float:
        job_id = self.loop.run_until_complete(sleeper.defer_async(key=key))
        return self.cancel_in_process(
            key,
            lambda: self.loop.run_until_complete(
                app.job_manager.cancel_job_by_id_async(job_id, abort=True)
            ),
        )

    def load_completed(self, count: int) -> None:
        # Direct insert: one statement, rows as a worker leaves them (status succeeded).
        self.sql.execute(
            "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
            "SELECT 'default', 'noop', jsonb_build_object('n', g), 'succeeded' "
            "FROM generate_series(1, %s) AS g",
            (count,),
        )

    def sample_stored(self, count: int) -> list[Any]:
        rows = self.sql.execute(
            "SELECT id FROM procrastinate_jobs WHERE status = 'succeeded' "
            "ORDER BY random() LIMIT %s",
            (count,),
        ).fetchall()
        return [row[0] for row in rows]
