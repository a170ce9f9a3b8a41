"""Execution benchmark (not a test): agent + worker processes against each store backend.

Reports no-op tasks completed per second with 2 worker processes, pickup latency from the
enqueue call returning to the handler starting (warm idle containers), and cancel latency
from the cancel call returning to the worker process being gone.

    .venv/bin/python bench/exec_bench.py --backend all [--tasks 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import psutil
import psycopg

from conveyor.queue_config import AutoscalerConfig, QueueConfig
from conveyor.server.agent.agent import Agent
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Stub
from conveyor.tasks import TaskStatus, is_terminal

HANDLERS = """
import os, time

def noop(n):
    return n

def stamp(n):
    return time.time()

def sleeper(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(60)
"""
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def make_stub(store: Store, ws_id: str, code: Path, func: str, **options: Any) -> Stub:
    config = QueueConfig(
        name=func,
        handler=f"handlers.py:{func}",
        code_path=str(code),
        max_pending_tasks=100_000,
        **options,
    )
    return await store.upsert_serve_stub(ws_id, func, config.to_dict(), b"")


async def wait_done(store: Store, ws_id: str, queue: str, count: int, timeout: float) -> None:
    """Wait until ``count`` tasks of ``queue`` are terminal (one grouped count per poll)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [summary] = await store.queue_summaries(ws_id, queue)
        if sum(n for status, n in summary.counts.items() if is_terminal(status)) >= count:
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"tasks of {queue} did not finish in {timeout}s")


async def run_backend(url: str, tasks: int, work: Path) -> dict[str, float]:
    store = open_store(url)
    await store.open()
    code = work / "code"
    code.mkdir(exist_ok=True)
    (code / "handlers.py").write_text(HANDLERS)
    ws = await store.ensure_workspace("bench")
    two = AutoscalerConfig(min_containers=1, max_containers=1)
    noop = await make_stub(store, ws.id, code, "noop", workers=2, autoscaler=two)
    stamp = await make_stub(store, ws.id, code, "stamp", workers=2, autoscaler=two)
    sleeper = await make_stub(store, ws.id, code, "sleeper", workers=2, autoscaler=two)
    agent = Agent(
        store,
        AgentSettings(
            stub_ids=frozenset({noop.id, stamp.id, sleeper.id}),
            stub_types=(),
            code_cache=work / "cache",
            sandbox=False,  # the bench measures the queue, not bubblewrap's start-up
        ),
    )
    results: dict[str, float] = {}
    try:
        # end to end: tasks queued first, then workers start
        payloads = [
            NewTask(orjson.dumps({"args": [i], "kwargs": {}}).decode()) for i in range(tasks)
        ]
        ids: list[str] = []
        for start in range(0, tasks, 500):
            ids += await store.enqueue(noop, payloads[start : start + 500], 100_000)
        stop = asyncio.Event()
        running = asyncio.create_task(agent.run(stop))
        began = time.perf_counter()
        await wait_done(store, ws.id, "noop", len(ids), 600)
        results["noop tasks/s (2 procs)"] = tasks / (time.perf_counter() - began)

        # pickup: warm idle workers, sequential tasks
        await asyncio.sleep(1.0)
        pickups = []
        for i in range(300):
            [tid] = await store.enqueue(
                stamp, [NewTask(orjson.dumps({"args": [i], "kwargs": {}}).decode())], 100_000
            )
            returned = time.time()
            while True:
                view = await store.get_task(tid)
                assert view is not None
                if view.task.status is TaskStatus.COMPLETE:
                    break
                await asyncio.sleep(0.001)
            pickups.append((float(orjson.loads(view.task.result or "0")) - returned) * 1000)
        results["pickup p50 ms"] = pct(pickups, 50)
        results["pickup p99 ms"] = pct(pickups, 99)

        # cancel: running task, time until its process is gone
        cancels = []
        for i in range(20):
            marker = work / f"pid-{i}"
            [tid] = await store.enqueue(
                sleeper,
                [NewTask(orjson.dumps({"args": [str(marker)], "kwargs": {}}).decode())],
                100_000,
            )
            while not marker.exists() or not marker.read_text():
                await asyncio.sleep(0.002)
            pid = int(marker.read_text())
            t0 = time.perf_counter()
            await store.cancel(ws.id, [tid])
            while alive(pid):
                await asyncio.sleep(0.001)
            cancels.append((time.perf_counter() - t0) * 1000)
        results["cancel p50 ms"] = pct(cancels, 50)
        results["cancel p99 ms"] = pct(cancels, 99)
        stop.set()
        await running
    finally:
        await store.close()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--tasks", type=int, default=5000)
    args = parser.parse_args()
    table: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.backend in ("sqlite", "all"):
            (work / "s").mkdir()
            table["sqlite"] = await run_backend(
                f"sqlite:///{work}/s/bench.db", args.tasks, work / "s"
            )
        if args.backend in ("postgres", "all"):
            db = f"conveyor_exec_bench_{int(time.time())}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {db}")
            try:
                (work / "p").mkdir()
                table["postgres"] = await run_backend(
                    f"postgresql://postgres@127.0.0.1:5432/{db}", args.tasks, work / "p"
                )
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    rows = list(next(iter(table.values())))
    print(f"{'metric':<26}" + "".join(f"{b:>14}" for b in table))
    for row in rows:
        print(f"{row:<26}" + "".join(f"{table[b][row]:>14.1f}" for b in table))


if __name__ == "__main__":
    asyncio.run(main())
