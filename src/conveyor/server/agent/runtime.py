"""What an agent keeps per stub it serves: the stub, its config, and its containers."""

from __future__ import annotations

import secrets
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.queue_config import QueueConfig
from conveyor.server.agent.environments import Environment
from conveyor.server.agent.handle import ProcessHandle, ProcessState
from conveyor.server.store.records import Stub, TaskRecord

#: Upper bound of the prefetched backlog per process.
MAX_PREFETCH_PER_PROCESS = 64


def new_container_id(stub_id: str) -> str:
    """DESIGN A4: ``taskqueue-<stub id prefix>-<8 hex>``."""
    return f"taskqueue-{stub_id.split('-')[0][:8]}-{secrets.token_hex(4)}"


@dataclass(eq=False)
class Container:
    id: str
    stub_id: str
    processes: list[ProcessHandle] = field(default_factory=list)
    #: Last time a process of this container finished or took a task (for keep-warm).
    last_active: float = 0.0
    stopping: bool = False
    #: Claimed tasks waiting for a free process (only for short tasks, see ``prefetch``).
    backlog: deque[TaskRecord] = field(default_factory=deque)
    #: Its queue's image, ready, once its start has it (None: the agent's own Python).
    environment: Environment | None = None
    #: Its processes' environment, secrets included: read once, as it starts; never shown.
    env: dict[str, str] = field(default_factory=dict, repr=False)

    def idle_processes(self) -> list[ProcessHandle]:
        return [p for p in self.processes if p.state is ProcessState.IDLE]

    def busy_processes(self) -> list[ProcessHandle]:
        return [p for p in self.processes if p.state is ProcessState.BUSY]

    def running(self) -> list[tuple[str, int]]:
        """Attempts this container holds leases for: running ones and the backlog."""
        held = [(p.current.task_id, p.current.fence) for p in self.processes if p.current]
        return held + [(t.id, t.fence) for t in self.backlog]

    def drop_backlog(self, task_id: str) -> bool:
        for task in self.backlog:
            if task.id == task_id:
                self.backlog.remove(task)
                return True
        return False


@dataclass(eq=False)
class StubRuntime:
    stub: Stub
    config: QueueConfig
    code_root: Path | None = None
    containers: dict[str, Container] = field(default_factory=dict)
    #: Set when new work may be claimable; cleared when a claim comes back short.
    maybe_work: bool = True
    #: No container start before this time (after a start failure).
    start_not_before: float = 0.0
    #: The last container start was refused for lack of CPU (logged once per episode).
    cpu_starved: bool = False
    #: Moving average of recent attempt durations (seconds), None before the first.
    avg_duration_s: float | None = None
    #: The key of its image's spec, once a container start has read it.
    image_key: str | None = None

    def observe(self, duration_s: float) -> None:
        prev = self.avg_duration_s
        self.avg_duration_s = duration_s if prev is None else 0.8 * prev + 0.2 * duration_s

    def prefetch(self, processes: int, budget_s: float) -> int:
        """How many claimed tasks a container may hold beyond its idle processes.

        A prefetched task shows RUNNING while it waits, so the backlog is sized to be worked
        off within ``budget_s``; queues whose tasks take longer than that get none.
        """
        if self.avg_duration_s is None or self.avg_duration_s > budget_s:
            return 0
        per_process = int(budget_s / max(self.avg_duration_s, 1e-4))
        return processes * max(1, min(MAX_PREFETCH_PER_PROCESS, per_process))
