"""Log capture benchmark (not a test): what printing costs a task, on each store backend.

Issue 16's figure: a task printing 10,000 short lines finishes within 2 s of the same task
printing nothing, with every line kept. Each figure is the median of ``--reps`` tasks run one
at a time on a warm container, from the enqueue call to the terminal status read back.

    .venv/bin/python -m bench.log_bench --backend all [--reps 5] [--lines 10000] [--no-sandbox]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import orjson
import psycopg
from bench.exec_bench import PG_ADMIN, make_stub

from conveyor.queue_config import AutoscalerConfig
from conveyor.server.agent.agent import Agent
from conveyor.server.agent.sandbox import unavailable
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask, Stub
from conveyor.tasks import TaskStatus, is_terminal

HANDLERS = """
def quiet(n):
    return n

def loud(n):
    for i in range(n):
        print("line", i)
    return n
"""


async def run_once(store: Store, stub: Stub, n: int) -> float:
    payload = orjson.dumps({"args": [n], "kwargs": {}}).decode()
    began = time.perf_counter()
    [task_id] = await store.enqueue(stub, [NewTask(payload)], 1000)
    while True:
        view = await store.get_task(task_id)
        assert view is not None
        if is_terminal(view.task.status):
            break
        await asyncio.sleep(0.002)
    elapsed = time.perf_counter() - began
    assert view.task.status is TaskStatus.COMPLETE, view.task.error
    kept, cursor = 0, None
    while True:
        page = await store.task_logs(task_id, view.task.workspace_id, cursor=cursor)
        assert page is not None
        kept += len(page.lines)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    if stub.name == "loud":
        assert kept == n, f"{kept} of {n} lines kept"
    return elapsed


async def run_backend(url: str, work: Path, reps: int, lines: int, sandbox: bool) -> list[str]:
    store = open_store(url)
    await store.open()
    code = work / "code"
    code.mkdir(exist_ok=True)
    (code / "handlers.py").write_text(HANDLERS)
    ws = await store.ensure_workspace("bench")
    one = AutoscalerConfig(min_containers=1, max_containers=1)
    quiet = await make_stub(store, ws.id, code, "quiet", autoscaler=one)
    loud = await make_stub(store, ws.id, code, "loud", autoscaler=one)
    agent = Agent(store, AgentSettings(
        stub_ids=frozenset({quiet.id, loud.id}), stub_types=(), code_cache=work / "cache",
        sandbox=sandbox,
    ))  # fmt: skip
    stop = asyncio.Event()
    running = asyncio.create_task(agent.run(stop))
    try:
        await run_once(store, quiet, 0)  # warm: the containers are up
        await run_once(store, loud, 1)
        quiet_s = [await run_once(store, quiet, lines) for _ in range(reps)]
        loud_s = [await run_once(store, loud, lines) for _ in range(reps)]
    finally:
        stop.set()
        await running
        await store.close()
    q, lo = statistics.median(quiet_s), statistics.median(loud_s)
    return [f"{q * 1000:.1f} ms", f"{lo * 1000:.1f} ms", f"{(lo - q) * 1000:.1f} ms"]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--no-sandbox", action="store_true")
    args = parser.parse_args()
    sandbox = not args.no_sandbox and unavailable() is None
    rows: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.backend in ("sqlite", "all"):
            (work / "s").mkdir()
            rows["sqlite"] = await run_backend(
                f"sqlite:///{work}/s/bench.db", work / "s", args.reps, args.lines, sandbox
            )
        if args.backend in ("postgres", "all"):
            db = f"conveyor_log_bench_{int(time.time())}"
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {db}")
            try:
                (work / "p").mkdir()
                rows["postgres"] = await run_backend(
                    f"postgresql://postgres@127.0.0.1:5432/{db}", work / "p", args.reps,
                    args.lines, sandbox,
                )
            finally:
                with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    print(f"sandboxed: {sandbox}; median of {args.reps}, enqueue to terminal status read")
    header = ["silent task", f"{args.lines:,} lines", "difference"]
    print(f"{'backend':<10}" + "".join(f"{h:>18}" for h in header))
    for backend, row in rows.items():
        print(f"{backend:<10}" + "".join(f"{cell:>18}" for cell in row))


if __name__ == "__main__":
    asyncio.run(main())
