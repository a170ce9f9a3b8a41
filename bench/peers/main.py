"""Run every workload against every system; print the table, write JSON to bench/results/.

    bench/.venv-peers/bin/python -m bench.peers.main [--quick] [--systems floor,celery,rq,...]

``floor`` (on by default) measures the machine's limits in the same run (``floor.py``); every
conveyor row is then also given as a ratio to its floor, and issue 15's targets are evaluated.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import statistics
import time
import traceback
from collections.abc import Callable
from pathlib import Path
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
from bench.peers.floor import Floors
from bench.peers.harness import MARKERS, PROCS, ROOT, machine, pct
from bench.peers.report import (
    GROWTH_LEVELS,
    floor_table,
    ratios,
    regressions,
    table,
    targets,
    targets_block,
)

SYSTEMS: dict[str, type[Adapter]] = {
    a.name: a
    for a in (CeleryAdapter, RqAdapter, DramatiqAdapter, ArqAdapter, HueyAdapter,
              ProcrastinateAdapter, TaskiqAdapter, ConveyorSqlite, ConveyorPostgres)
}
FLOOR = "floor"
PACKAGES = ("celery", "kombu", "rq", "dramatiq", "arq", "huey", "procrastinate", "taskiq",
            "taskiq-redis", "redis", "psycopg", "httpx", "conveyor")
class Run:
    def __init__(self, adapter: Adapter, tasks: int, reps: int, levels: tuple[int, ...]) -> None:
        self.a, self.tasks, self.reps, self.levels = adapter, tasks, reps, levels
        self.samples: dict[str, list[float]] = {}
        #: Rows that could not be taken (the run goes on; the table shows "—").
        self.errors: dict[str, str] = {}

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)
        print(f"  {self.a.name:<16} {key:<24} {value:12.2f}", flush=True)

    def repeat(self, body: Callable[[], None]) -> None:
        for _ in range(self.reps):
            body()

    def guarded(self, key: str, body: Callable[[], None]) -> None:
        """A row whose API may not exist yet (the direct producer): its error is recorded."""
        try:
            self.repeat(body)
        except Exception as exc:
            self.errors[key] = traceback.format_exc()
            print(f"  {self.a.name:<16} {key:<24} {'—':>12}  ({type(exc).__name__}: {exc})",
                  flush=True)

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

    def status(self, handles: list[Any], key: str = "status_rate",
               lookup: Callable[[Any], object] | None = None) -> None:
        look = lookup or self.a.lookup
        count, began = 0, time.perf_counter()
        while count < 3000 and time.perf_counter() - began < 15:
            look(handles[(count * 7919) % len(handles)])
            count += 1
        self.add(key, count / (time.perf_counter() - began))

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
            direct = getattr(a, "enqueue_direct", None)
            if direct is not None:
                self.guarded("enqueue_direct", lambda: self.enqueue("enqueue_direct", direct))
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
                lookup_direct = getattr(a, "lookup_direct", None)
                if lookup_direct is not None:
                    self.guarded("status_direct",
                                 lambda: self.status(handles, "status_direct", lookup_direct))
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2,000 tasks, 1 repetition, growth to 10^5 only")
    parser.add_argument("--reps", type=int, help="repetitions per figure (default 3)")
    parser.add_argument("--tasks", type=int, help="tasks per throughput run (default 10,000)")
    parser.add_argument("--no-growth", action="store_true")
    parser.add_argument("--systems", default=",".join([FLOOR, *SYSTEMS]),
                        help=f"comma-separated, of: {FLOOR} (the machine's limits), "
                             + ", ".join(SYSTEMS))
    parser.add_argument("--gateway-processes", type=int, default=2, metavar="N",
                        help="gateway processes of conveyor-pg's `conveyor server --processes N`"
                             " (default 2, one per core here)")
    parser.add_argument("--baseline", type=Path, metavar="JSON",
                        help="an earlier run's JSON: bulk enqueue, cancel and growth are checked "
                             "against it (issue 15: nothing else regresses)")
    args = parser.parse_args()
    tasks = args.tasks or (2_000 if args.quick else 10_000)
    reps = args.reps or (1 if args.quick else 3)
    levels = () if args.no_growth else GROWTH_LEVELS[:2] if args.quick else GROWTH_LEVELS
    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s != FLOOR and s not in SYSTEMS]
    if unknown:
        parser.error(f"unknown system(s): {', '.join(unknown)}")
    baseline = json.loads(args.baseline.read_text())["medians"] if args.baseline else None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = ROOT / "bench" / "results"
    logs = out / f"peers-{stamp}-logs"
    report: dict[str, Any] = {
        "machine": machine(), "versions": versions(), "tasks": tasks, "reps": reps,
        "growth_levels": list(levels), "workers": {}, "gateway": {}, "samples": {},
        "medians": {}, "errors": {}, "row_errors": {},
    }
    if "conveyor-pg" in systems:
        used = max(1, args.gateway_processes)
        ConveyorPostgres.gateway_processes = used
        report["gateway"]["conveyor-pg"] = {
            "gateway_processes": used, "argv": f"conveyor server --processes {used}",
        }
    if "conveyor-sqlite" in systems:
        report["gateway"]["conveyor-sqlite"] = {"gateway_processes": 1, "argv": "conveyor serve"}
    MARKERS.flushdb()
    for name in systems:
        if name == FLOOR:
            note = ("minimal ASGI app on uvicorn + httptools + uvloop (1 process); "
                    "one-row insert+commit / SELECT on SQLite and PostgreSQL, 1 caller")
            report["workers"][name] = note
            print(f"== {name}: {note}", flush=True)
            floors = Floors(logs, tasks, reps)
            try:
                floors.all()
            finally:
                PROCS.stop_all()
            samples, row_errors = floors.samples, floors.errors
        else:
            adapter = SYSTEMS[name](logs)
            if name == "conveyor-pg":
                adapter.workers_note += (f"; gateway `conveyor server --processes "
                                         f"{ConveyorPostgres.gateway_processes}`")
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
            samples, row_errors = run.samples, run.errors
        report["samples"][name] = samples
        report["medians"][name] = {k: statistics.median(v) for k, v in samples.items()}
        if row_errors:
            report["row_errors"][name] = row_errors
    MARKERS.flushdb()
    medians = report["medians"]
    report["table"] = text = table(medians, systems)
    report["floor_table"] = floors_text = floor_table(medians)
    report["ratios"] = ratios(medians, systems)
    report["targets"] = goals = targets(medians, systems, report["row_errors"])
    report["regressions"] = steady = regressions(medians, baseline)
    goals_text = targets_block(goals, steady, baseline is not None)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"peers-{stamp}.json"
    path.write_text(json.dumps(report, indent=2))
    print()
    print(f"machine: {report['machine']}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    print(f"{tasks:,} tasks per throughput run; each figure the median of {reps} run(s)\n")
    if FLOOR in systems:
        print(floors_text + "\n")
    if text.count("\n") > 1:  # a row besides the head
        print(text + "\n")
    print(goals_text)
    for name, error in report["errors"].items():
        print(f"\n{name} FAILED: {error.strip().splitlines()[-1]}")
    if report["row_errors"]:
        print("\nnot measured (tracebacks in the JSON's row_errors):")
    for name, failed in report["row_errors"].items():
        for key, error in failed.items():
            print(f"  {name} {key}: {error.strip().splitlines()[-1]}")
    print(f"\nJSON: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
