"""Run every workload against every system; print the table, write JSON to bench/results/.

    bench/.venv-peers/bin/python -m bench.peers.main [--quick] [--systems celery,rq,...]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench.peers.adapters.arq import ArqAdapter
from bench.peers.adapters.base import Adapter
from bench.peers.adapters.celery import CeleryAdapter
from bench.peers.adapters.conveyor import ConveyorPostgres, ConveyorSqlite
from bench.peers.adapters.dramatiq import DramatiqAdapter
from bench.peers.adapters.huey import HueyAdapter
from bench.peers.adapters.procrastinate import ProcrastinateAdapter
from bench.peers.adapters.rq import RqAdapter
from bench.peers.adapters.taskiq import TaskiqAdapter
from bench.peers.harness import MARKERS, PROCS, ROOT, machine, pct

SYSTEMS: dict[str, type[Adapter]] = {
    a.name: a
    for a in (CeleryAdapter, RqAdapter, DramatiqAdapter, ArqAdapter, HueyAdapter,
              ProcrastinateAdapter, TaskiqAdapter, ConveyorSqlite, ConveyorPostgres)
}
CONVEYORS = ("conveyor-sqlite", "conveyor-pg")
PACKAGES = ("celery", "kombu", "rq", "dramatiq", "arq", "huey", "procrastinate", "taskiq",
            "taskiq-redis", "redis", "psycopg", "httpx", "conveyor")
# (key, label, direction): "+" higher is better, "-" lower is better.
ROWS: list[tuple[str, str, str]] = [
    ("enqueue_single", "enqueue, one call per task (tasks/s)", "+"),
    ("enqueue_single_8c", "enqueue, one call per task, 8 concurrent clients (tasks/s)", "+"),
    ("enqueue_bulk", "enqueue, bulk API (tasks/s)", "+"),
    ("e2e_launch", "end to end from worker launch (tasks/s)", "+"),
    ("e2e_steady", "end to end, first to last completion (tasks/s)", "+"),
    ("pickup_p50", "pickup latency p50 (ms)", "-"),
    ("pickup_p95", "pickup latency p95 (ms)", "-"),
    ("pickup_p99", "pickup latency p99 (ms)", "-"),
    ("status_rate", "status look-ups of completed tasks (/s)", "+"),
    ("cancel_p50", "cancel latency p50 (ms)", "-"),
    ("cancel_p99", "cancel latency p99 (ms)", "-"),
]
#: Rows only conveyor runs, compared with the peers' figure of another row (issue 7's target:
#: single enqueues from 8 concurrent clients against the best peer's single enqueue).
COMPARE = {"enqueue_single_8c": "enqueue_single"}
GROWTH_LEVELS = (1_000, 100_000, 1_000_000)
for level in GROWTH_LEVELS:
    ROWS.append((f"growth_enqueue_{level}", f"enqueue with {level:,} stored (tasks/s)", "+"))
    ROWS.append((f"growth_read_{level}", f"status read p50 with {level:,} stored (ms)", "-"))


class Run:
    def __init__(self, adapter: Adapter, tasks: int, reps: int, levels: tuple[int, ...]) -> None:
        self.a, self.tasks, self.reps, self.levels = adapter, tasks, reps, levels
        self.samples: dict[str, list[float]] = {}

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)
        print(f"  {self.a.name:<16} {key:<24} {value:12.2f}", flush=True)

    def repeat(self, body: Callable[[], None]) -> None:
        for _ in range(self.reps):
            body()

    def enqueue(self, key: str, call: Callable[[range], list[Any]]) -> None:
        self.a.reset()
        began = time.perf_counter()
        handles = call(range(self.tasks))
        elapsed = time.perf_counter() - began
        assert len(handles) == self.tasks
        self.add(key, self.tasks / elapsed)

    def enqueue_8c(self, call: Callable[[range], tuple[list[Any], float]]) -> None:
        self.a.reset()
        handles, elapsed = call(range(self.tasks))
        assert len(set(handles)) == self.tasks
        self.add("enqueue_single_8c", self.tasks / elapsed)

    def end_to_end(self) -> list[Any]:
        self.a.reset()
        handles = self.a.enqueue(range(self.tasks))
        launched = time.perf_counter()
        self.a.start_workers()
        try:
            self.a.wait_workers_up()
            first, done = self.a.wait_complete(handles, timeout=300)
        finally:
            self.a.stop_workers()
        self.add("e2e_launch", self.tasks / (done - launched))
        self.add("e2e_steady", (self.tasks - 1) / max(done - first, 1e-9))
        return handles

    def pickup(self) -> None:
        # Sequential, bounded: 300 tasks (each waits at most 30 s).
        delays = [self.a.stamp() * 1000 for _ in range(300)]
        for p in (50, 95, 99):
            self.add(f"pickup_p{p}", pct(delays, p))

    def status(self, handles: list[Any]) -> None:
        count, began = 0, time.perf_counter()
        while count < 3000 and time.perf_counter() - began < 15:
            self.a.lookup(handles[(count * 7919) % len(handles)])
            count += 1
        self.add("status_rate", count / (time.perf_counter() - began))

    def cancel(self) -> None:
        delays = [self.a.cancel_one(f"{self.a.name}-{time.time_ns()}") * 1000 for _ in range(10)]
        self.add("cancel_p50", pct(delays, 50))
        self.add("cancel_p99", pct(delays, 99))

    def growth(self) -> None:
        self.a.reset()
        stored = 0
        for level in self.levels:
            began = time.perf_counter()
            self.a.load_completed(level - stored)
            print(f"  {self.a.name}: loaded {level - stored:,} in "
                  f"{time.perf_counter() - began:.1f}s", flush=True)
            stored = level
            sample = self.a.sample_stored(300)
            for _ in range(self.reps):
                began = time.perf_counter()
                self.a.enqueue_single(range(1000))
                self.add(f"growth_enqueue_{level}", 1000 / (time.perf_counter() - began))
                reads = []
                for handle in sample:
                    t0 = time.perf_counter()
                    self.a.lookup(handle)
                    reads.append((time.perf_counter() - t0) * 1000)
                self.add(f"growth_read_{level}", pct(reads, 50))

    def all(self) -> dict[str, list[float]]:
        a = self.a
        a.setup()
        try:
            self.repeat(lambda: self.enqueue("enqueue_single", a.enqueue_single))
            concurrent = getattr(a, "enqueue_concurrent", None)
            if concurrent is not None:
                self.repeat(lambda: self.enqueue_8c(concurrent))
            if a.has_bulk:
                self.repeat(lambda: self.enqueue("enqueue_bulk", a.enqueue_bulk))
            handles: list[Any] = []
            for _ in range(self.reps):
                handles = self.end_to_end()
            a.start_workers()
            try:
                a.wait_workers_up()
                for _ in range(5):  # warm: every worker process has imported and run a task
                    a.stamp()
                self.repeat(self.pickup)
                self.repeat(lambda: self.status(handles))
                if a.can_cancel:
                    self.repeat(self.cancel)
            finally:
                a.stop_workers()
            if a.durable and self.levels:
                self.growth()
        finally:
            a.teardown()
        return self.samples


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "?"
    return found


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2f}"


def table(medians: dict[str, dict[str, float]], systems: list[str]) -> str:
    peers = [s for s in systems if s not in CONVEYORS]
    ours = [s for s in systems if s in CONVEYORS]
    head = ["workload", "better", *systems, *(f"{s} / best peer" for s in ours)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label, direction in ROWS:
        cells = [medians.get(s, {}).get(key) for s in systems]
        if all(c is None for c in cells):
            continue
        against = COMPARE.get(key, key)
        got = [medians[p][against] for p in peers if against in medians.get(p, {})]
        best = (max(got) if direction == "+" else min(got)) if got else None
        ratios = []
        for s in ours:
            mine = medians.get(s, {}).get(key)
            ratios.append(f"{mine / best:.2f}" if mine is not None and best else "—")
        arrow = "higher" if direction == "+" else "lower"
        lines.append("| " + " | ".join([label, arrow, *map(fmt, cells), *ratios]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2,000 tasks, 1 repetition, growth to 10^5 only")
    parser.add_argument("--reps", type=int, help="repetitions per figure (default 3)")
    parser.add_argument("--tasks", type=int, help="tasks per throughput run (default 10,000)")
    parser.add_argument("--no-growth", action="store_true")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    args = parser.parse_args()
    tasks = args.tasks or (2_000 if args.quick else 10_000)
    reps = args.reps or (1 if args.quick else 3)
    levels = () if args.no_growth else GROWTH_LEVELS[:2] if args.quick else GROWTH_LEVELS
    systems = [s for s in args.systems.split(",") if s]
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results"
    logs = out / f"peers-{stamp}-logs"
    report: dict[str, Any] = {
        "machine": machine(), "versions": versions(), "tasks": tasks, "reps": reps,
        "growth_levels": list(levels), "workers": {}, "samples": {}, "medians": {},
        "errors": {},
    }
    MARKERS.flushdb()
    for name in systems:
        adapter = SYSTEMS[name](logs)
        report["workers"][name] = adapter.workers_note
        print(f"== {name}: {adapter.workers_note}", flush=True)
        run = Run(adapter, tasks, reps, levels)
        try:
            run.all()
        except Exception:
            report["errors"][name] = traceback.format_exc()
            print(report["errors"][name], flush=True)
        finally:
            PROCS.stop_all()
        report["samples"][name] = run.samples
        report["medians"][name] = {k: statistics.median(v) for k, v in run.samples.items()}
    MARKERS.flushdb()
    text = table(report["medians"], systems)
    report["table"] = text
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"peers-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print()
    print(f"machine: {report['machine']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print(f"{tasks:,} tasks per throughput run; each figure the median of {reps} run(s)\n")
    print(text)
    for name, error in report["errors"].items():
        print(f"\n{name} FAILED: {error.strip().splitlines()[-1]}")
    print(f"\nJSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
