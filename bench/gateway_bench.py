"""Gateway benchmark (not a test): a real ``conveyor serve`` over HTTP on loopback.

Reports requests per second and latency p50/p99 with 50 concurrent keep-alive clients for
single enqueues, batch enqueues (100 tasks per request) and status reads.

    .venv/bin/python bench/gateway_bench.py [--seconds 5] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

HANDLER = """
from conveyor import task_queue

@task_queue(name="noop", max_pending_tasks=10_000_000, ttl=86400)
def noop(n: int = 0) -> int:
    return n
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def load(
    clients: int,
    seconds: float,
    request: Callable[[aiohttp.ClientSession, int], Awaitable[None]],
    http: aiohttp.ClientSession,
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await request(http, k * 1_000_000 + i)
            latencies.append((time.perf_counter() - t0) * 1000)
            i += 1

    began = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    return len(latencies) / (time.perf_counter() - began), latencies


async def run(url: str, token: str, clients: int, seconds: float) -> None:
    # aiohttp as the load generator: httpx's async pool tops out near 130 req/s at 50
    # concurrent connections on this machine, which would measure the client, not the server.
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, headers=headers, connector=connector) as http:
        ids: list[str] = []

        async def single(h: aiohttp.ClientSession, i: int) -> None:
            async with h.post("/taskqueue/noop", json={"n": i}) as r:
                r.raise_for_status()
                body = await r.json()
            if len(ids) < 2000:
                ids.append(body["task_id"])

        async def batch(h: aiohttp.ClientSession, i: int) -> None:
            async with h.post("/taskqueue/noop/batch", json={"tasks": [{"n": i}] * 100}) as r:
                r.raise_for_status()
                await r.read()

        async def status(h: aiohttp.ClientSession, i: int) -> None:
            async with h.get(f"/v2/task/{ids[i % len(ids)]}/") as r:
                r.raise_for_status()
                await r.read()

        rows = []
        for name, fn, per_request in (
            ("enqueue single", single, 1),
            ("enqueue batch x100", batch, 100),
            ("status read", status, 1),
        ):
            rate, lat = await load(clients, seconds, fn, http)
            rows.append((name, rate, rate * per_request, pct(lat, 50), pct(lat, 99)))
        print(
            f"{clients} concurrent keep-alive clients, {seconds:.0f} s per row, "
            f"{os.cpu_count()} cores"
        )
        print(f"{'route':<20}{'req/s':>10}{'tasks/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
        for name, rate, tasks, p50, p99 in rows:
            print(f"{name:<20}{rate:>10.0f}{tasks:>10.0f}{p50:>10.1f}{p99:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "app.py").write_text(HANDLER)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve", "app.py:noop", "--port", str(port)],
            cwd=work,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            token_file = work / ".conveyor" / "token"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if (
                        token_file.exists()
                        and httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
                    ):
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            asyncio.run(
                run(
                    f"http://127.0.0.1:{port}",
                    token_file.read_text().strip(),
                    args.clients,
                    args.seconds,
                )
            )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()


if __name__ == "__main__":
    main()
