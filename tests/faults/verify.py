"""The promises, checked at the end of a fault run, and the report that says how they held.

What is checked (see docs/reliability.md):

- no loss: every task id a gateway returned exists in the store, and every task is terminal;
- exactly-once terminal status: the result a COMPLETE or FAILED row holds is the token of
  exactly one ledger run, and that run is the task's last attempt (a run from an earlier
  attempt, whose lease was lost, never wrote its result: fencing);
- no task ran twice at the same time: two ledger runs of one task overlap in wall time only
  when the earlier one ran on an agent that was paused or cut off during it (its lease had
  lapsed, so the retry elsewhere was legitimate, and its own result was refused); two runs
  never share an attempt number;
- die with the agent: no run ends more than ``DEATH_GRACE_S`` after its agent was SIGKILLed
  (a worker that outlived its agent would run on, and overlap the retry elsewhere), and no
  worker process is still alive a few seconds after its agent alone was SIGKILLed (seen by
  the chaos itself, ``Rig.orphans``);
- callbacks: every terminal task with a callback URL got one, with its final status;
- no tracebacks: expected faults are logged as one-line warnings, so a traceback in any
  process log is a bug the run found (counted by what was raised);
- the mix: ``raise`` → FAILED (ValueError), ``crash`` → COMPLETE on attempt 2 or later, the
  rest COMPLETE; a task whose retries were all used up by injected faults is FAILED with a
  WorkerCrashed/ContainerLost error after ``MAX_RETRIES + 1`` attempts and is counted apart.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from conveyor.server.store import open_store
from conveyor.server.store.records import TaskRecord
from conveyor.tasks import TaskStatus, is_terminal
from tests.faults.workload import MAX_RETRIES, Accepted, Planned, Run, summarize_kinds

#: A worker process dies within about a second of its agent; a run that ended later than this
#: after its agent's SIGKILL went on without it.
DEATH_GRACE_S = 2.0


async def _fetch(store_url: str, ids: Sequence[str]) -> dict[str, TaskRecord | None]:
    store = open_store(store_url)
    await store.open()
    try:
        found: dict[str, TaskRecord | None] = {}
        for task_id in ids:
            view = await store.get_task(task_id)
            found[task_id] = view.task if view is not None else None
        return found
    finally:
        await store.close()


def fetch(store_url: str, ids: Sequence[str]) -> dict[str, TaskRecord | None]:
    return asyncio.run(_fetch(store_url, ids))


def logged_errors(logs: Sequence[Path]) -> Counter[str]:
    """What each traceback in the process logs raised (its last line), counted: an expected
    fault shows as a store error; anything else is a bug to read about."""
    found: Counter[str] = Counter()
    for log in logs:
        if not log.is_file():
            continue
        in_traceback = False
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("Traceback (most recent call last)"):
                in_traceback = True
            elif in_traceback and line and not line[0].isspace():
                found[line[:200]] += 1
                in_traceback = False
    return found


def wait_terminal(
    store_url: str, ids: Sequence[str], timeout: float
) -> dict[str, TaskRecord | None]:
    """Poll until every task is terminal (or missing), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    done: dict[str, TaskRecord | None] = {}
    while True:
        rows = fetch(store_url, pending)
        for task_id, row in rows.items():
            if row is None or is_terminal(row.status):
                done[task_id] = row
        pending = [t for t in pending if t not in done]
        if not pending or time.monotonic() > deadline:
            done.update(rows)
            return done
        time.sleep(1.0)


@dataclass
class Report:
    title: str
    seed: int
    tasks: int = 0
    mix: str = ""
    with_callback: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    not_terminal: int = 0
    duplicate_completes: int = 0
    overlaps_outside_stall: int = 0
    overlaps_during_stall: int = 0
    #: Worker processes alive seconds after their agent alone was SIGKILLed.
    outlived_agent: int = 0
    #: Runs that ended after their agent was SIGKILLed.
    ran_after_death: int = 0
    stale_refused: int = 0
    unreported_runs: int = 0
    foreign_stopped: int = 0
    retried_by_chaos: int = 0
    exhausted_by_chaos: int = 0
    callbacks_missing: int = 0
    callback_deliveries: int = 0
    enqueue_retries: int = 0
    #: Tracebacks the conveyor processes logged, by their last line (what was raised).
    errors_logged: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    violations: list[str] = field(default_factory=list)

    def text(self) -> str:
        faults = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(self.statuses.items()))
        lines = [
            f"fault-injection report: {self.title} (seed {self.seed}, {self.seconds:.0f} s)",
            f"  tasks: {self.tasks} ({self.mix}); {self.with_callback} with a callback",
            f"  faults injected: {faults}",
            f"  statuses: {statuses}",
            f"  tasks lost: {self.lost}",
            f"  tasks not terminal: {self.not_terminal}",
            f"  duplicate COMPLETEs: {self.duplicate_completes}",
            f"  concurrent runs outside a pause or cut: {self.overlaps_outside_stall}"
            f" (during one, lease lapsed: {self.overlaps_during_stall})",
            f"  worker processes outliving their SIGKILLed agent: {self.outlived_agent};"
            f" runs ending after their agent's death: {self.ran_after_death}",
            f"  stale writes refused: {self.stale_refused}",
            f"  runs killed before reporting: {self.unreported_runs}",
            f"  attempts across a pause/cut stopped on return: {self.foreign_stopped}",
            f"  tasks retried because of faults: {self.retried_by_chaos};"
            f" retries used up by faults: {self.exhausted_by_chaos}",
            f"  callbacks missing: {self.callbacks_missing}"
            f" ({self.callback_deliveries} deliveries received)",
            f"  enqueue requests retried: {self.enqueue_retries}",
            f"  tracebacks in the process logs: {sum(self.errors_logged.values())}",
        ]
        lines += [f"    {n} × {error}" for error, n in self.errors_logged.most_common(10)]
        lines += [f"  violations: {len(self.violations)}"]
        lines += [f"    - {v}" for v in self.violations[:20]]
        return "\n".join(lines)


def _token_of(row: TaskRecord) -> str | None:
    """The ledger token of the run whose result or error the row holds."""
    if row.status is TaskStatus.COMPLETE and row.result:
        value = orjson.loads(row.result)
        return str(value.get("token")) if isinstance(value, dict) else None
    if row.status is TaskStatus.FAILED and row.error:
        message = str(orjson.loads(row.error).get("message", ""))
        if message.startswith("planned failure "):
            return message.removeprefix("planned failure ")
    return None


def _error_type(row: TaskRecord) -> str:
    return str(orjson.loads(row.error).get("type", "")) if row.error else ""


def _stalled(stalls: Mapping[str, Sequence[tuple[float, float]]], run: Run) -> bool:
    """Was the run's agent paused or cut off for part of the run?"""
    return any(a < run.end and b > run.start for a, b in stalls.get(run.agent, ()))


def check(
    report: Report,
    planned: Sequence[Planned],
    accepted: Accepted,
    rows: Mapping[str, TaskRecord | None],
    runs: Sequence[Run],
    stalls: Mapping[str, Sequence[tuple[float, float]]],
    callbacks: Mapping[str, str],
    begins: Sequence[tuple[str, str]] = (),
    deaths: Mapping[str, float] | None = None,
) -> Report:
    v = report.violations
    report.tasks = len(accepted.ids)
    report.mix = summarize_kinds(planned)
    report.with_callback = sum(p.callback for p in planned)
    report.enqueue_retries = accepted.retries
    if len(accepted.ids) != len(planned):
        v.append(f"{len(planned) - len(accepted.ids)} planned tasks were never accepted")
    for key in accepted.conflicts:
        v.append(f"idempotency key {key} gave two task ids")
    by_task: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_task[run.task_id].append(run)
    for item in planned:
        task_id = accepted.ids.get(item.key)
        if task_id is None:
            continue
        row = rows.get(task_id)
        if row is None:
            report.lost += 1
            v.append(f"task {task_id} ({item.kind}) was accepted but is not in the store")
            continue
        report.statuses[row.status.value] += 1
        if not is_terminal(row.status):
            report.not_terminal += 1
            v.append(
                f"task {task_id} ({item.kind}) is still {row.status.value}: attempt"
                f" {row.attempt}, fence {row.fence}, container {row.container_id!r}"
            )
            continue
        _check_runs(report, item, row, by_task.get(task_id, []), stalls, deaths or {})
        _check_status(report, item, row)
        if item.callback:
            got = callbacks.get(task_id)
            if got is None:
                report.callbacks_missing += 1
                v.append(f"task {task_id} ended {row.status.value} but got no callback")
            elif got != row.status.value:
                v.append(f"task {task_id} is {row.status.value}; its callback said {got}")
    # A hold run is attempt 1 (only that attempt holds); a later attempt of the same task may
    # legitimately run on the same agent once it is back, and must not count as the stale one.
    ended = {(run.task_id, run.agent) for run in runs if run.attempt == 1}
    for task_id, agent in begins:
        if agent in stalls:
            if (task_id, agent) in ended:
                v.append(f"task {task_id}: {agent} came back and did not stop its stale attempt")
            else:
                report.foreign_stopped += 1
    known = set(accepted.ids.values())
    strays = {run.task_id for run in runs} - known
    if strays:
        v.append(f"{len(strays)} tasks ran that no enqueue returned: {sorted(strays)[:3]}")
    return report


def _check_runs(
    report: Report,
    item: Planned,
    row: TaskRecord,
    runs: list[Run],
    stalls: Mapping[str, Sequence[tuple[float, float]]],
    deaths: Mapping[str, float],
) -> None:
    v = report.violations
    token = _token_of(row)
    recorded = [run for run in runs if run.token == token]
    if token is not None:
        if len(recorded) != 1:
            report.duplicate_completes += 1
            v.append(f"task {row.id}: {len(recorded)} ledger runs match its stored result")
        elif recorded[0].attempt != row.attempt:
            report.duplicate_completes += 1
            v.append(
                f"task {row.id}: result of attempt {recorded[0].attempt} stored, but the task"
                f" is at attempt {row.attempt} (a stale write got through)"
            )
    elif row.status is TaskStatus.COMPLETE:
        report.duplicate_completes += 1
        v.append(f"task {row.id}: COMPLETE with a result no ledger run wrote")
    attempts = Counter(run.attempt for run in runs)
    for attempt, count in attempts.items():
        if count > 1:
            v.append(f"task {row.id}: attempt {attempt} ran {count} times (claimed twice)")
    for run in runs:
        died = deaths.get(run.agent)
        if died is not None and run.end > died + DEATH_GRACE_S:
            report.ran_after_death += 1
            v.append(
                f"task {row.id}: attempt {run.attempt} ran on {run.end - died:.1f} s after"
                f" its agent {run.agent} was SIGKILLed"
            )
        if run in recorded:
            continue
        if _stalled(stalls, run):
            report.stale_refused += 1
        else:
            report.unreported_runs += 1
    ordered = sorted(runs, key=lambda r: r.start)
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            if second.start >= first.end:
                break
            if _stalled(stalls, first) and first not in recorded:
                report.overlaps_during_stall += 1
            else:
                report.overlaps_outside_stall += 1
                v.append(
                    f"task {row.id}: attempts {first.attempt} ({first.agent}) and"
                    f" {second.attempt} ({second.agent}) ran at the same time"
                )


def _check_status(report: Report, item: Planned, row: TaskRecord) -> None:
    v = report.violations
    chaos_failure = _error_type(row) in ("WorkerCrashed", "ContainerLost")
    if row.status is TaskStatus.FAILED and chaos_failure and row.attempt == MAX_RETRIES + 1:
        if item.kind == "crash" and row.attempt < 2:
            v.append(f"task {row.id}: crash task failed on its first attempt")
        report.exhausted_by_chaos += 1
        return
    expected = TaskStatus.FAILED if item.kind == "raise" else TaskStatus.COMPLETE
    if row.status is not expected:
        v.append(
            f"task {row.id} ({item.kind}) is {row.status.value} after {row.attempt} attempts,"
            f" expected {expected.value}; error {row.error}"
        )
        return
    if item.kind == "raise" and _error_type(row) != "ValueError":
        v.append(f"task {row.id}: raise task failed with {_error_type(row)}")
    if item.kind == "crash" and row.attempt < 2:
        v.append(f"task {row.id}: crash-once task completed on attempt {row.attempt}")
    normal_attempts = 2 if item.kind == "crash" else 1
    if row.attempt > normal_attempts:
        report.retried_by_chaos += 1


def wait_callbacks(
    expected: Sequence[str], delivered: Callable[[], Mapping[str, str]], timeout: float
) -> None:
    """Wait until every expected task id got a callback (a killed gateway's claimed callbacks
    come back after their 60 s outbox lease)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not set(expected) <= set(delivered()):
        time.sleep(0.5)
