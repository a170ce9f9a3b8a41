"""The limits processes run under, as decisions the supervisor acts on: which attempts
overran their timeout, which processes their memory, how much CPU containers reserve."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from conveyor.error_info import ErrorInfo
from conveyor.server.agent.handle import Attempt, ProcessHandle, ProcessState
from conveyor.server.agent.runtime import StubRuntime
from conveyor.server.store.records import Outcome
from conveyor.tasks import TaskStatus


def overdue(processes: Iterable[ProcessHandle], now: float) -> list[ProcessHandle]:
    """Processes whose attempt passed its deadline and that are not being killed yet."""
    return [
        p
        for p in processes
        if p.current is not None
        and p.current.deadline is not None
        and now >= p.current.deadline
        and p.kill_reason is None
    ]


def over_memory(
    processes: Iterable[ProcessHandle], stubs: Mapping[str, StubRuntime]
) -> list[ProcessHandle]:
    """Live processes, not being killed yet, above their queue's ``memory`` (MiB)."""
    over = []
    for p in processes:
        if p.state is ProcessState.DEAD or p.kill_reason is not None:
            continue
        rss = p.rss()
        if rss is not None and rss > stubs[p.stub_id].config.memory * 1024 * 1024:
            over.append(p)
    return over


def reserved_cpu(stubs: Iterable[StubRuntime]) -> float:
    """CPU reserved by the containers that are not stopping (each its queue's ``cpu``)."""
    return sum(
        r.config.cpu * sum(1 for c in r.containers.values() if not c.stopping) for r in stubs
    )


def timeout_outcome(attempt: Attempt, timeout_s: float) -> Outcome:
    error = ErrorInfo("TimeoutError", f"attempt exceeded the timeout of {timeout_s} s")
    return Outcome(attempt.task_id, attempt.fence, TaskStatus.TIMEOUT, error=error.to_json())
