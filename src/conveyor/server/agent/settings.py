"""How an agent runs: its intervals, limits and which stubs it serves."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.server.secret_key import SecretKey
from conveyor.server.store.records import DEPLOYED, LogLimits, StubType


@dataclass(frozen=True)
class AgentSettings:
    #: A lease not renewed for this long lets others retry the task (lost-agent detection).
    lease_s: float = 10.0
    heartbeat_s: float = 2.0
    sweep_s: float = 1.0
    #: Claim attempts without a notification (SQLite shared by several processes).
    poll_s: float = 0.5
    stubs_refresh_s: float = 2.0
    #: How often the agent makes the due ticks of the schedules it runs.
    schedule_s: float = 1.0
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
    #: Where queues' images (their environments) are built and kept, one folder per spec.
    envs: Path = Path(".conveyor/envs")
    #: uv's download and wheel cache for those builds; None: ``UV_CACHE_DIR`` if set, else
    #: ``uv-cache`` beside ``envs``.
    uv_cache: Path | None = None
    #: Run every stub of these types (all workspaces) …
    stub_types: tuple[StubType, ...] = tuple(sorted(DEPLOYED))
    #: … and these stubs (``conveyor serve``'s own); tests pass ``stub_types=()`` for these only.
    stub_ids: frozenset[str] = frozenset()
    #: Run every worker process in a bubblewrap sandbox (DESIGN A13, docs/security.md);
    #: False (``--no-sandbox``): handlers run as this agent's user, one trust domain.
    sandbox: bool = True
    #: Folders bound read-write, at their own path, into every sandbox (``--sandbox-bind``):
    #: the way to give handlers a shared folder.
    sandbox_binds: tuple[str, ...] = ()
    #: Folders and files no sandbox shows, even inside a bound folder: the store's files,
    #: its token and secret key files (the command line sets them). The code cache, the
    #: environments and uv's cache are always hidden.
    sandbox_hidden: tuple[str, ...] = ()
    #: Decrypts the secrets a queue's processes get (DESIGN A9); the default has no key.
    secret_key: SecretKey = field(default_factory=SecretKey)
    #: What each task keeps of the lines its processes write (DESIGN A8).
    log_limits: LogLimits = field(default_factory=LogLimits)
    agent_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    )

    def uv_cache_dir(self) -> Path:
        if self.uv_cache is not None:
            return self.uv_cache
        return Path(os.environ.get("UV_CACHE_DIR") or self.envs.parent / "uv-cache")
