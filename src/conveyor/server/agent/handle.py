"""The agent's view of one runner process: its states, and the seam the supervisor and the
dispatcher drive it through. ``RunnerProcess`` is the real one; tests pass fakes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from conveyor.server.store.records import TaskRecord

if TYPE_CHECKING:
    from conveyor.server.agent.environments import Environment
    from conveyor.server.agent.sandbox import Sandbox


class ProcessState(Enum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    DEAD = "dead"


class KillReason(Enum):
    TIMEOUT = "timeout"
    CANCEL = "cancel"
    MEMORY = "memory"
    STOP = "stop"


@dataclass(slots=True)
class Attempt:
    task_id: str
    fence: int
    attempt: int
    #: Wall-clock second after which the attempt times out (None: no timeout).
    deadline: float | None
    dispatched_at: float
    started_at: float | None = None


class ProcessHandle(Protocol):
    """What the agent needs of a process: start it, hand it a task, stop or kill it, read
    its memory. Its results and its exit come back through the ``on_done`` / ``on_exit``
    it was spawned with."""

    container_id: str
    stub_id: str
    state: ProcessState
    current: Attempt | None
    kill_reason: KillReason | None
    #: The ``init_failed`` error (its code did not load), else None.
    init_error: dict[str, Any] | None
    #: Why ``start`` returned False, in words.
    start_failure: str

    async def start(self) -> bool: ...
    def run(self, task: TaskRecord, now: float) -> None: ...
    async def stop(self) -> None: ...
    async def kill(self, reason: KillReason) -> None: ...
    def rss(self) -> int | None:
        """Resident memory in bytes; None when it cannot be read (not started, gone)."""
        ...


DoneHandler = Callable[[ProcessHandle, Attempt, dict[str, Any]], Awaitable[None]]
ExitHandler = Callable[[ProcessHandle, int | None], Awaitable[None]]
#: Lines a process wrote (a ``log`` frame's ``lines``), during ``Attempt`` or, with None,
#: outside any task.
LogHandler = Callable[[ProcessHandle, Attempt | None, list[Any]], None]


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """Everything a container's process is made from."""

    container_id: str
    #: The ``init`` frame: config, code root, stub and container ids.
    init: Mapping[str, Any]
    #: The queue's ``env`` and its secrets: never in a repr.
    env: Mapping[str, str] = field(repr=False)
    on_done: DoneHandler
    on_exit: ExitHandler
    #: The sandbox to run it in; None: unsandboxed (``--no-sandbox``).
    sandbox: Sandbox | None = None
    on_log: LogHandler | None = None
    #: The image's environment it runs in; None: the agent's own Python.
    environment: Environment | None = None


#: Makes a process handle (not started yet); ``RunnerProcess`` itself, or a test's fake.
Spawn = Callable[[ProcessSpec], ProcessHandle]
