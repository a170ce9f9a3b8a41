"""arq on Redis db 4 (async workers, default ``max_jobs``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobStatus
from bench.peers.adapters.base import SLEEP_S, Adapter, mark_started, mark_stopped
from bench.peers.harness import PROCS, REDIS_DB, REDIS_HOST, REDIS_PORT, venv_bin

SETTINGS = RedisSettings(host=REDIS_HOST, port=REDIS_PORT, database=REDIS_DB["arq"])


async def noop(ctx: dict[str, Any], n: int) -> int:
    return n


async def stamp(ctx: dict[str, Any], n: int) -> float:
    return time.time()


async def sleeper(ctx: dict[str, Any], key: str) -> None:
    mark_started(key)
    try:
        await asyncio.sleep(SLEEP_S)
    finally:
        mark_stopped(key)


class WorkerSettings:
    functions: ClassVar = [noop, stamp, sleeper]
    redis_settings = SETTINGS
    allow_abort_jobs = True


class ArqAdapter(Adapter):
    name = "arq"
    workers_note = "2 `arq WorkerSettings` processes (asyncio, default max_jobs=10 each)"
    can_cancel = True

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.pool: ArqRedis = self.loop.run_until_complete(create_pool(SETTINGS))
        self.reset()

    def teardown(self) -> None:
        self.stop_workers()
        self.reset()
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()

    def reset(self) -> None:
        self.loop.run_until_complete(self.pool.flushdb())

    def start_workers(self) -> None:
        argv = [venv_bin("arq"), f"{__name__}.WorkerSettings"]
        self.workers = [PROCS.start(argv, self.logs / f"arq-worker-{i}.log") for i in range(2)]

    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        async def go() -> list[Any]:
            return [await self.pool.enqueue_job("noop", i) for i in args]

        return self.loop.run_until_complete(go())

    def is_complete(self, handle: Any) -> bool:
        return bool(self.loop.run_until_complete(handle.status()) == JobStatus.complete)

    def lookup(self, handle: Any) -> object:
        return self.loop.run_until_complete(Job(handle.job_id, self.pool).status())

    def stamp(self) -> float:
        async def go() -> float:
            job = await self.pool.enqueue_job("stamp", 0)
            assert job is not None
            returned = time.time()
            # job.result() raises in the instant between dequeue and result; poll the result.
            for _ in range(30_000):
                info = await job.result_info()
                if info is not None:
                    return float(info.result) - returned
                await asyncio.sleep(0.001)
            raise TimeoutError("arq stamp")

        return self.loop.run_until_complete(go())

    def cancel_one(self, key: str) -> float:
        job = self.loop.run_until_complete(self.pool.enqueue_job("sleeper", key))
        assert job is not None
        return self.cancel_in_process(
            key, lambda: self.loop.run_until_complete(job.abort(timeout=30, poll_delay=0.01))
        )
