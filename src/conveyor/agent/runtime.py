"""What an agent keeps per stub it serves: the stub, its config, and its containers."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.agent.worker import WorkerProcess, WorkerState
from conveyor.queue_config import QueueConfig
from conveyor.store.records import Stub


def new_container_id(stub_id: str) -> str:
    """DESIGN A4: ``taskqueue-<stub id prefix>-<8 hex>``."""
    return f"taskqueue-{stub_id.split('-')[0][:8]}-{secrets.token_hex(4)}"


@dataclass(eq=False)
class Container:
    id: str
    stub_id: str
    workers: list[WorkerProcess] = field(default_factory=list)
    #: Last time a worker of this container finished or took a task (for keep-warm).
    last_active: float = 0.0
    stopping: bool = False

    def idle_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.state is WorkerState.IDLE]

    def busy_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.state is WorkerState.BUSY]

    def running(self) -> list[tuple[str, int]]:
        return [(w.current.task_id, w.current.fence) for w in self.workers if w.current]


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
