"""Dramatiq with the Redis broker and the Results middleware on Redis db 3."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import dramatiq
from bench.peers.adapters.base import Adapter
from bench.peers.harness import PROCS, redis_url, venv_bin
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend
from dramatiq.results.errors import ResultMissing

backend = RedisBackend(url=redis_url("dramatiq"))
broker = RedisBroker(url=redis_url("dramatiq"))
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def noop(n: int) -> int:
    return n


@dramatiq.actor(store_results=True)
def stamp(n: int) -> float:
    return time.time()


class DramatiqAdapter(Adapter):
    name = "dramatiq"
    workers_note = "1 `dramatiq --processes 2 --threads 1` (2 worker processes, 1 thread each)"

    def setup(self) -> None:
        self.reset()

    def teardown(self) -> None:
        self.stop_workers()
        self.reset()

    def reset(self) -> None:
        broker.client.flushdb()

    def start_workers(self) -> None:
        argv = [venv_bin("dramatiq"), __name__, "--processes", "2", "--threads", "1"]
        self.workers = [PROCS.start(argv, self.logs / "dramatiq-worker.log")]

    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        return [noop.send(i) for i in args]

    def is_complete(self, handle: Any) -> bool:
        try:
            backend.get_result(handle, block=False)
        except ResultMissing:
            return False
        return True

    def lookup(self, handle: Any) -> object:
        return self.is_complete(handle)

    def stamp(self) -> float:
        message = stamp.send(0)
        returned = time.time()
        return float(message.get_result(backend=backend, block=True, timeout=30_000)) - returned
