"""How an agent runs: its intervals, limits and which stubs it serves."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.server.store.records import DEPLOYMENT, StubType


@dataclass(frozen=True)
class AgentSettings:
    #: A lease not renewed for this long lets others retry the task (lost-agent detection).
    lease_s: float = 10.0
    heartbeat_s: float = 2.0
    sweep_s: float = 1.0
    #: Claim attempts without a notification (SQLite shared by several processes).
    poll_s: float = 0.5
    stubs_refresh_s: float = 2.0
    memory_check_s: float = 0.25
    tick_s: float = 0.1
    #: On SIGTERM, running tasks get this long to finish before they are released.
    drain_grace_s: float = 10.0
    #: Wait after a container failed to start before trying again.
    start_retry_s: float = 5.0
    #: CPUs this agent may reserve for containers (each reserves its queue's ``cpu``);
    #: None: no limit (``conveyor worker --cpus`` sets it).
    cpu_capacity: float | None = None
    #: Short tasks get a prefetched backlog per container, sized to be worked off within this.
    prefetch_budget_s: float = 0.05
    code_cache: Path = Path(".conveyor/code")
    #: Run every stub of these types (all workspaces) …
    stub_types: tuple[StubType, ...] = (DEPLOYMENT,)
    #: … and these stubs (``conveyor serve``'s own); tests pass ``stub_types=()`` for these only.
    stub_ids: frozenset[str] = frozenset()
    agent_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    )
