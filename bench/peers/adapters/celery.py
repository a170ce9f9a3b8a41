"""Celery with Redis as broker and result backend (Redis db 1)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench.peers.adapters.base import SLEEP_S, Adapter, mark_started
from bench.peers.harness import PROCS, redis_url, venv_bin
from celery import Celery
from celery.result import AsyncResult

app = Celery("bench", broker=redis_url("celery"), backend=redis_url("celery"))
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task
def noop(n: int) -> int:
    return n


@app.task
def stamp(n: int) -> float:
    return time.time()


@app.task
def sleeper(key: str) -> None:
    mark_started(key)
    time.sleep(SLEEP_S)


class CeleryAdapter(Adapter):
    name = "celery"
    workers_note = "1 `celery worker --pool=prefork --concurrency=2` (2 forked child processes)"
    can_cancel = True

    def setup(self) -> None:
        self.reset()

    def teardown(self) -> None:
        self.stop_workers()
        self.reset()

    def reset(self) -> None:
        with app.connection_for_write() as conn:
            conn.default_channel.client.flushdb()

    def start_workers(self) -> None:
        argv = [venv_bin("celery"), "-A", __name__, "worker", "--pool=prefork",
                "--concurrency=2", "--loglevel=WARNING"]
        self.workers = [PROCS.start(argv, self.logs / "celery-worker.log")]

    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        return [noop.delay(i) for i in args]

    def is_complete(self, handle: Any) -> bool:
        return AsyncResult(handle.id, app=app).state == "SUCCESS"

    def lookup(self, handle: Any) -> object:
        return AsyncResult(handle.id, app=app).state

    def stamp(self) -> float:
        result = stamp.delay(0)
        returned = time.time()
        return float(result.get(timeout=30)) - returned

    def cancel_one(self, key: str) -> float:
        result = sleeper.delay(key)
        return self.cancel_by_pid(key, lambda: app.control.revoke(result.id, terminate=True))
