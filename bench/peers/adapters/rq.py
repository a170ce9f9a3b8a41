"""RQ on Redis db 2, with SimpleWorker processes (no fork per job)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench.peers.adapters.base import Adapter
from bench.peers.harness import PROCS, REDIS_DB, REDIS_HOST, REDIS_PORT, redis_url, venv_bin
from redis import Redis
from rq import Queue
from rq.job import Job, JobStatus

conn = Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB["rq"])
queue = Queue("bench", connection=conn)


def noop(n: int) -> int:
    return n


def stamp(n: int) -> float:
    return time.time()


class RqAdapter(Adapter):
    name = "rq"
    workers_note = "2 `rq worker --worker-class rq.worker.SimpleWorker` processes"
    has_bulk = True

    def setup(self) -> None:
        self.reset()

    def teardown(self) -> None:
        self.stop_workers()
        self.reset()

    def reset(self) -> None:
        conn.flushdb()

    def start_workers(self) -> None:
        argv = [venv_bin("rq"), "worker", "--url", redis_url("rq"), "--worker-class",
                "rq.worker.SimpleWorker", "--quiet", "bench"]
        self.workers = [PROCS.start(argv, self.logs / f"rq-worker-{i}.log") for i in range(2)]

    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        return [queue.enqueue(noop, i) for i in args]

    def enqueue_bulk(self, args: Sequence[int]) -> list[Any]:
        jobs: list[Any] = []
        for start in range(0, len(args), 500):
            chunk = args[start : start + 500]
            jobs += queue.enqueue_many([Queue.prepare_data(noop, (i,)) for i in chunk])
        return jobs

    def is_complete(self, handle: Any) -> bool:
        return bool(handle.get_status(refresh=True) == JobStatus.FINISHED)

    def lookup(self, handle: Any) -> object:
        return Job.fetch(handle.id, connection=conn).get_status()

    def stamp(self) -> float:
        job = queue.enqueue(stamp, 0)
        returned = time.time()
        deadline = returned + 30
        while job.get_status(refresh=True) != JobStatus.FINISHED:
            if time.time() > deadline:
                raise TimeoutError("rq stamp")
            time.sleep(0.001)
        return float(job.return_value()) - returned
