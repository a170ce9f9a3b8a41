"""The interface every system's adapter implements, and the handler-side helpers."""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.peers.harness import MARKERS, PROCS, host_pid, pid_gone, wait_until

SLEEP_S = 30.0  # how long the cancel workload's task would run if nobody cancelled it


def mark_started(key: str) -> None:
    """Handler side: say which process runs the sleeper task."""
    MARKERS.set(f"pid:{key}", os.getpid())


def mark_stopped(key: str) -> None:
    """Handler side (in-process cancels): the handler left its sleep."""
    MARKERS.set(f"stopped:{key}", time.time())


class Adapter(abc.ABC):
    """One system. Handles are whatever the system returns on enqueue."""

    name: str
    #: What "2 worker processes" means for this system (printed in the report).
    workers_note: str
    has_bulk = False
    can_cancel = False
    #: Whether it keeps every task's status durably (takes part in the growth workload).
    durable = False

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.workers: list[Any] = []

    # -- lifecycle ------------------------------------------------------------------------
    @abc.abstractmethod
    def setup(self) -> None:
        """Create/flush the system's own Redis db or PostgreSQL database."""

    @abc.abstractmethod
    def teardown(self) -> None:
        """Stop everything and drop/flush what setup made."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget every stored task (workers are stopped)."""

    @abc.abstractmethod
    def start_workers(self) -> None:
        """Launch the 2 worker processes; returns at once (no readiness wait)."""

    def wait_workers_up(self) -> None:
        """Block until the system can answer status look-ups again (after start_workers)."""
        return None

    def stop_workers(self) -> None:
        for proc in self.workers:
            PROCS.stop(proc)
        self.workers = []

    # -- operations -----------------------------------------------------------------------
    @abc.abstractmethod
    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        """One idiomatic enqueue call per task."""

    def enqueue_bulk(self, args: Sequence[int]) -> list[Any]:
        raise NotImplementedError

    @abc.abstractmethod
    def is_complete(self, handle: Any) -> bool:
        """Through the system's own status/result mechanism."""

    @abc.abstractmethod
    def lookup(self, handle: Any) -> object:
        """One status look-up of a task (a fresh fetch by id)."""

    @abc.abstractmethod
    def stamp(self) -> float:
        """Enqueue one stamp task; return (handler start − enqueue call returned) in seconds."""

    def cancel_one(self, key: str) -> float:
        """Start a sleeper, wait until it runs, cancel it; seconds until it stopped."""
        raise NotImplementedError

    # -- growth ---------------------------------------------------------------------------
    def load_completed(self, count: int) -> None:
        """Store ``count`` more completed tasks, fast (bulk API or direct insert)."""
        raise NotImplementedError

    def sample_stored(self, count: int) -> list[Any]:
        """Handles of ``count`` random stored tasks."""
        raise NotImplementedError

    # -- shared helpers -------------------------------------------------------------------
    def enqueue(self, args: Sequence[int]) -> list[Any]:
        return self.enqueue_bulk(args) if self.has_bulk else self.enqueue_single(args)

    def wait_complete(self, handles: Sequence[Any], timeout: float) -> tuple[float, float]:
        """Wait until all are complete; return (first seen complete, all complete) instants.

        Polls the first handle, then the last (queues are FIFO), then checks every one.
        """
        deadline = time.monotonic() + timeout
        wait_until(lambda: self.is_complete(handles[0]), timeout, f"{self.name} first task",
                   0.002)
        first = time.perf_counter()
        wait_until(lambda: self.is_complete(handles[-1]), deadline - time.monotonic(),
                   f"{self.name} last task", 0.01)
        done = time.perf_counter()
        for handle in handles:
            if not self.is_complete(handle):
                wait_until(lambda h=handle: self.is_complete(h), deadline - time.monotonic(),
                           f"{self.name} all tasks", 0.01)
                done = time.perf_counter()
        return first, done

    def cancel_by_pid(self, key: str, cancel: Any) -> float:
        """Wait for the sleeper's pid, call ``cancel()``, time until that process is gone."""
        wait_until(lambda: MARKERS.get(f"pid:{key}") is not None, 60, f"{self.name} sleeper")
        pid = host_pid(int(MARKERS.get(f"pid:{key}") or 0), MARKERS.get(f"ns:{key}"))
        began = time.perf_counter()
        cancel()
        wait_until(lambda: pid_gone(pid), 30, f"{self.name} cancel")
        return time.perf_counter() - began

    def cancel_in_process(self, key: str, cancel: Any) -> float:
        """Wait for the sleeper to run, call ``cancel()``, time until the handler left."""
        wait_until(lambda: MARKERS.get(f"pid:{key}") is not None, 60, f"{self.name} sleeper")
        began_wall = time.time()
        cancel()
        wait_until(lambda: MARKERS.get(f"stopped:{key}") is not None, 30, f"{self.name} cancel")
        return float(MARKERS.get(f"stopped:{key}") or 0) - began_wall
