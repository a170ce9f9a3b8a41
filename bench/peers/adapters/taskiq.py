"""Taskiq with taskiq-redis: ListQueueBroker and RedisAsyncResultBackend on Redis db 6."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from bench.peers.adapters.base import Adapter
from bench.peers.harness import PROCS, REDIS_DB, REDIS_HOST, REDIS_PORT, redis_url, venv_bin
from redis import Redis
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend

broker = ListQueueBroker(redis_url("taskiq")).with_result_backend(
    RedisAsyncResultBackend(redis_url("taskiq"))
)


@broker.task(task_name="noop")
async def noop(n: int) -> int:
    return n


@broker.task(task_name="stamp")
async def stamp(n: int) -> float:
    return time.time()


class TaskiqAdapter(Adapter):
    name = "taskiq"
    workers_note = "1 `taskiq worker --workers 2` (2 worker processes, asyncio, default limits)"

    def setup(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(broker.startup())
        self.reset()

    def teardown(self) -> None:
        self.stop_workers()
        self.reset()
        self.loop.run_until_complete(broker.shutdown())
        self.loop.close()

    def reset(self) -> None:
        Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB["taskiq"]).flushdb()

    def start_workers(self) -> None:
        argv = [venv_bin("taskiq"), "worker", f"{__name__}:broker", "--workers", "2"]
        self.workers = [PROCS.start(argv, self.logs / "taskiq-worker.log")]

    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        async def go() -> list[Any]:
            return [await noop.kiq(i) for i in args]

        return self.loop.run_until_complete(go())

    def is_complete(self, handle: Any) -> bool:
        return bool(self.loop.run_until_complete(handle.is_ready()))

    def lookup(self, handle: Any) -> object:
        return self.loop.run_until_complete(broker.result_backend.get_result(handle.task_id))

    def stamp(self) -> float:
        async def go() -> float:
            task = await stamp.kiq(0)
            returned = time.time()
            result = await task.wait_result(check_interval=0.001, timeout=30)
            return float(result.return_value) - returned

        return self.loop.run_until_complete(go())
