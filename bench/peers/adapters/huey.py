"""Huey with RedisHuey on Redis db 5."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench.peers.adapters.base import Adapter
from bench.peers.harness import PROCS, REDIS_DB, REDIS_HOST, REDIS_PORT, venv_bin
from huey import RedisHuey

huey = RedisHuey("bench", host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB["huey"])


@huey.task()
def noop(n: int) -> int:
    return n


@huey.task()
def stamp(n: int) -> float:
    return time.time()


class HueyAdapter(Adapter):
    name = "huey"
    workers_note = "1 `huey_consumer -w 2 -k process` (2 worker processes)"

    def setup(self) -> None:
        self.reset()

    def teardown(self) -> None:
        self.stop_workers()
        self.reset()

    def reset(self) -> None:
        huey.storage.flush_all()

    def start_workers(self) -> None:
        argv = [venv_bin("huey_consumer"), f"{__name__}.huey", "-w", "2", "-k", "process",
                "-q"]
        self.workers = [PROCS.start(argv, self.logs / "huey-consumer.log")]

    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        return [noop(i) for i in args]

    def is_complete(self, handle: Any) -> bool:
        return huey.result(handle.id, preserve=True) is not None

    def lookup(self, handle: Any) -> object:
        return huey.result(handle.id, preserve=True)

    def stamp(self) -> float:
        result = stamp(0)
        returned = time.time()
        return float(result.get(blocking=True, timeout=30, backoff=1.0, max_delay=0.001)) - returned
