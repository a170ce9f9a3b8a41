"""Direct producer throughput: ``Client(store=...).put`` in a loop, one caller, on a fresh store;
on PostgreSQL also ``within(conn).put`` (one caller transaction per put).

    python bench/direct_bench.py sqlite:////tmp/direct.db [N]
    python bench/direct_bench.py postgresql://postgres@127.0.0.1:5432/bench [N] [--profile]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time

from conveyor import Client
from conveyor.queue_config import QueueConfig
from conveyor.server.store import open_store


async def setup(url: str) -> str:
    store = open_store(url)
    await store.open()
    ws = await store.ensure_workspace("bench")
    token = await store.create_token(ws.id)
    config = QueueConfig.from_dict(
        {"name": "square", "handler": "app.py:h", "max_pending_tasks": 1_000_000}
    )
    await store.deploy_stub(ws.id, "square", config.to_dict(), b"def h(x): return x")
    await store.close()
    return token


def main() -> None:
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 and sys.argv[2].isdigit() else 3000
    client = Client(store=url, token=asyncio.run(setup(url)))
    client.put("square", 0)  # connect, authenticate, resolve: not measured
    if "--profile" in sys.argv:
        cProfile.runctx("for i in range(n): client.put('square', i)", globals(), locals(),
                        "/tmp/direct_bench.prof")
        pstats.Stats("/tmp/direct_bench.prof").sort_stats("tottime").print_stats(15)
        return
    t0 = time.perf_counter()
    for i in range(n):
        client.put("square", i)
    print(f"put loop: {n / (time.perf_counter() - t0):,.0f} tasks/s ({n} puts)")
    if url.startswith("postgres"):
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            view = client.within(conn)
            t0 = time.perf_counter()
            for i in range(n):
                with conn.transaction():
                    view.put("square", i)
            print(f"within loop: {n / (time.perf_counter() - t0):,.0f} tasks/s ({n} commits)")


if __name__ == "__main__":
    main()
