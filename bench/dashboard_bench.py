"""Dashboard latency with 1,000,000 tasks: ``python bench/dashboard_bench.py``.

Fills an SQLite store with ``store_bench.BULK_ROWS`` COMPLETE tasks (its one-statement bulk
loader) plus a few live ones in a second queue, starts ``conveyor server`` on it in a
subprocess, signs in through the dashboard's form, and times each page (median and p95 of
``--rounds`` requests after two warm-ups) against the 300 ms target.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from store_bench import BULK_ROWS, bulk_load

from conveyor.server.store import open_store
from conveyor.server.store.records import NewTask, Outcome
from conveyor.tasks import TaskStatus

TARGET_MS = 300.0
TOKEN = "cv_dashboard_bench"


async def fill(url: str) -> str:
    """The bulk history, then live tasks in another queue; returns a live task's id."""
    store = open_store(url)
    await store.open()
    try:
        workspace = await store.ensure_workspace("bench")
        await store.create_token(workspace.id, TOKEN)
        history = await store.deploy_stub(workspace.id, "history", {}, b"x")
        seconds = bulk_load(url, history)
        print(f"bulk load of {BULK_ROWS:,} tasks: {seconds:.1f} s")
        live = await store.deploy_stub(workspace.id, "live", {"max_pending_tasks": 1000}, b"x")
        ids = await store.enqueue(live, [NewTask('{"args":[],"kwargs":{}}')] * 60, 1000)
        claimed = await store.claim(live.id, "taskqueue-bench-0001", 20, lease_s=3600)
        await store.finish([Outcome(t.id, t.fence, TaskStatus.FAILED,
                                    error='{"type":"E","message":"m","traceback":""}')
                            for t in claimed[:10]])
        return ids[-1]
    finally:
        await store.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("conveyor server exited")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("conveyor server did not become ready")


def timings_ms(client: httpx.Client, path: str, rounds: int) -> list[float]:
    samples = []
    for i in range(rounds + 2):
        started = time.perf_counter()
        response = client.get(path)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200 or "Sign in" in response.text:
            raise SystemExit(f"GET {path} answered {response.status_code}")
        if i >= 2:
            samples.append(elapsed)
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store_url = f"sqlite:///{Path(folder)}/bench.db"
        task_id = asyncio.run(fill(store_url))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "server", "--store", store_url,
             "--port", str(port)],
            cwd=folder,
        )
        try:
            wait_ready(url, process)
            with httpx.Client(base_url=url, timeout=30) as client:
                client.post("/dashboard/signin", data={"token": TOKEN, "next": "/dashboard/"})
                first = client.get("/dashboard/tasks").text
                cursor = first.split("cursor=", 1)[1].split('"', 1)[0]
                pages = {
                    "queues page  /dashboard/": "/dashboard/",
                    "queues refresh  /dashboard/queues/rows": "/dashboard/queues/rows",
                    "tasks page  /dashboard/tasks": "/dashboard/tasks",
                    "tasks page 2 (cursor)": f"/dashboard/tasks?cursor={cursor}",
                    "tasks ?queue=live": "/dashboard/tasks?queue=live",
                    "tasks ?status=FAILED (rare)": "/dashboard/tasks?status=FAILED",
                    "task page  /dashboard/tasks/{id}": f"/dashboard/tasks/{task_id}",
                }
                rows = []
                for name, path in pages.items():
                    samples = timings_ms(client, path, args.rounds)
                    median, high = statistics.median(samples), p95(samples)
                    verdict = "ok" if median < TARGET_MS and high < TARGET_MS else "SLOW"
                    rows.append((name, f"{median:7.1f}", f"{high:7.1f}", verdict))
        finally:
            process.terminate()
            process.wait(timeout=30)
    width = max(len(row[0]) for row in rows)
    print(f"{BULK_ROWS + 60:,} tasks in SQLite; {args.rounds} requests each; target "
          f"< {TARGET_MS:.0f} ms")
    print(f"{'page':<{width}}  median ms   p95 ms")
    for name, median_ms, high_ms, verdict in rows:
        print(f"{name:<{width}}  {median_ms:>9}  {high_ms:>7}  {verdict}")


if __name__ == "__main__":
    main()
