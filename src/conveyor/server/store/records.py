"""Plain records the store reads and writes. Instants are integer microseconds (UTC epoch)."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from conveyor.errors import ConfigError
from conveyor.queue_config import QueueConfig
from conveyor.tasks import TaskStatus

StubType = Literal[
    "taskqueue/deployment", "taskqueue/serve", "schedule/deployment", "schedule/serve"
]
DEPLOYMENT: StubType = "taskqueue/deployment"
SERVE: StubType = "taskqueue/serve"
SCHEDULE_DEPLOYMENT: StubType = "schedule/deployment"
SCHEDULE_SERVE: StubType = "schedule/serve"
#: Made by ``deploy`` (run by every agent of the store) and by ``serve`` (run by its agent).
DEPLOYED: frozenset[StubType] = frozenset({DEPLOYMENT, SCHEDULE_DEPLOYMENT})
SERVED: frozenset[StubType] = frozenset({SERVE, SCHEDULE_SERVE})
SCHEDULES: tuple[StubType, ...] = (SCHEDULE_DEPLOYMENT, SCHEDULE_SERVE)


def stub_type(config: Mapping[str, Any], deployed: bool) -> StubType:
    """The type of a stub of ``config``: a schedule's when it has ``when``."""
    if config.get("when") is not None:
        return SCHEDULE_DEPLOYMENT if deployed else SCHEDULE_SERVE
    return DEPLOYMENT if deployed else SERVE


@dataclass(frozen=True, slots=True)
class Workspace:
    id: str
    name: str
    #: HMAC key for callback signatures.
    signing_secret: str
    created_at: int


@dataclass(frozen=True, slots=True)
class Stub:
    """One deployment version of a task queue (serve stubs may bump ``config_version``)."""

    id: str
    workspace_id: str
    name: str
    type: StubType
    #: Deployment version: v1, v2, … per (workspace, name).
    version: int
    #: The queue's configuration as a JSON object text, as the API shows it; read it through
    #: ``queue_config``.
    config: str
    config_version: int
    #: Id of the code object (bytes) in the store.
    object_id: int
    created_at: int
    updated_at: int
    #: False once the version is stopped: it takes no new tasks, keeps no containers and makes
    #: no ticks (DESIGN A11).
    active: bool = True
    #: ``config`` parsed when the record is made, or why it does not parse.
    _parsed: QueueConfig | str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_parsed", _parse_config(self.name, self.config))

    @property
    def queue_config(self) -> QueueConfig:
        """The queue's configuration; ``ConfigError`` if the stored text is not a valid one.

        A bad row fails only its readers, not every listing of stubs.
        """
        if isinstance(self._parsed, str):
            raise ConfigError(self._parsed)
        return self._parsed


@functools.lru_cache(maxsize=256)
def _parse_config(name: str, text: str) -> QueueConfig | str:
    # The gateway reads its stub once per request, and a stub's config text rarely changes:
    # cached, a request pays a hash of the text, not a parse and a validation.
    try:
        return QueueConfig.stored(name, text)
    except ConfigError as exc:
        return exc.message


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    workspace_id: str
    stub_id: str
    status: TaskStatus
    #: JSON text ``{"args": [...], "kwargs": {...}}``.
    payload: str
    callback_url: str | None
    #: Attempts counted so far (``attempts`` in the API); 0 before the first start.
    attempt: int
    #: Monotonic claim counter. Every claim increments it; every write from an attempt is
    #: guarded by it, so a stale attempt can never write (fencing).
    fence: int
    max_retries: int
    #: Seconds one attempt may run; -1 disables.
    timeout_s: float
    ttl_s: float
    retry_backoff_s: float
    #: "" until a container takes the task.
    container_id: str
    created_at: int
    started_at: int | None
    ended_at: int | None
    updated_at: int
    #: JSON text of the handler's return value (bytes as ``{"base64": …}``), or None.
    result: str | None
    #: JSON text of a ``conveyor.error_info.ErrorInfo``, or None.
    error: str | None
    #: Not started before this instant (a delay, a ``Run-At``, a schedule's tick); None
    #: when the task was enqueued to run at once.
    run_at: int | None = None
    #: The task this one re-runs (``POST /v2/task/{id}/replay``), or None.
    replay_of: str | None = None


@dataclass(frozen=True, slots=True)
class OutputInfo:
    id: str
    task_id: str
    name: str
    size: int
    created_at: int


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task with everything the status route shows."""

    task: TaskRecord
    stub: Stub
    outputs: Sequence[OutputInfo]
    #: PENDING + RETRY tasks of the task's stub.
    queue_depth: int
    #: Live containers of the task's stub.
    active_containers: int


@dataclass(frozen=True, slots=True)
class NewTask:
    #: JSON text ``{"args": [...], "kwargs": {...}}``.
    payload: str
    callback_url: str | None = None
    #: Same key within 24 h returns the existing task id and creates nothing.
    idempotency_key: str | None = None
    #: Not started before this instant; its ttl counts from then (or from the enqueue, when
    #: that is later).
    run_at: int | None = None
    #: The task this one re-runs, for a replay.
    replay_of: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one attempt ended, written back by the agent through a guarded transition.

    ``status`` is COMPLETE, FAILED or TIMEOUT. A FAILED outcome with ``retryable`` becomes RETRY
    (runnable after the backoff) when the task has retries left, else FAILED.
    """

    task_id: str
    fence: int
    status: TaskStatus
    result: str | None = None
    error: str | None = None
    retryable: bool = False
    outputs: Sequence[tuple[str, bytes]] = ()
    #: Set when the attempt's process died (crash, kill, out of memory): its attempt row says
    #: ``CRASHED`` with this exit.
    exit: ProcessExit | None = None


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """How a worker process ended: an exit code, or the name of the signal that killed it."""

    code: int | None = None
    signal: str | None = None


#: How an attempt ended (DESIGN A8); None while it runs. ``CRASHED``: its process died;
#: ``LOST``: its lease ran out (the agent is gone).
AttemptOutcome = Literal["COMPLETE", "FAILED", "RETRY", "TIMEOUT", "CANCELLED", "CRASHED", "LOST"]


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """One attempt of a task, as ``GET /v2/task/{id}/attempts`` shows it."""

    attempt: int
    container_id: str
    started_at: int
    ended_at: int | None
    outcome: AttemptOutcome | None
    #: JSON text of a ``conveyor.error_info.ErrorInfo``, or None.
    error: str | None
    exit: ProcessExit | None


LogStream = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class LogLine:
    """A line a task's process wrote, as an agent hands it to the store."""

    task_id: str
    attempt: int
    stream: LogStream
    #: When the agent's runner read it (microseconds).
    at: int
    line: str


@dataclass(frozen=True, slots=True)
class StoredLogLine:
    """A kept line of a task; ``id`` orders a task's lines and is the cursor after it."""

    id: int
    attempt: int
    stream: LogStream
    at: int
    line: str


@dataclass(frozen=True, slots=True)
class LogLimits:
    """What one task keeps of its lines (DESIGN A8); past either, one marker line per attempt
    ``[conveyor: N more lines dropped]`` and nothing else."""

    max_lines: int = 20_000
    max_bytes: int = 2 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogPage:
    lines: Sequence[StoredLogLine]
    #: The cursor after the last line returned (the given one when none was); None once the
    #: task is terminal and no line is left after this page.
    next_cursor: str | None
    #: The task's status when the page was read.
    status: TaskStatus


@dataclass(frozen=True, slots=True)
class CancelResult:
    cancelled: list[str] = field(default_factory=list)
    already_finished: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class TaskFilter:
    statuses: frozenset[TaskStatus] | None = None
    queue: str | None = None
    stub_id: str | None = None
    container_id: str | None = None
    created_after: int | None = None
    created_before: int | None = None


@dataclass(frozen=True, slots=True)
class VersionSummary:
    version: int
    stub_id: str
    type: StubType
    created_at: int
    active: bool = True
    #: Its config's ``image`` (DESIGN A9), None without one.
    image: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class QueueSummary:
    name: str
    versions: Sequence[VersionSummary]
    queue_depth: int
    active_containers: int
    counts: Mapping[TaskStatus, int]


@dataclass(frozen=True, slots=True)
class StubLoad:
    """What the autoscaler needs to know about one stub."""

    stub_id: str
    #: PENDING + RETRY tasks runnable now (at most ``LOAD_COUNT_CAP`` when many are delayed).
    runnable: int
    running: int


@dataclass(frozen=True, slots=True)
class AgentInfo:
    """A live agent and what it runs: every deployed stub, and/or the serve stubs it named."""

    id: str
    runs_deployed: bool
    stub_ids: frozenset[str]
    heartbeat_at: int
    #: The build state of the images of the stubs it runs, by stub id:
    #: ``{"state": "building" | "ready" | "failed", "message"?: …}``.
    builds: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def runs(self, stub_id: str, stub_type: StubType) -> bool:
        return stub_id in self.stub_ids or (self.runs_deployed and stub_type in DEPLOYED)


@dataclass(frozen=True, slots=True)
class Tick:
    """A tick a schedule made: one per (schedule name, instant), made once by whoever came
    first."""

    tick_at: int
    #: The version that made it.
    stub_id: str
    #: The task it made; None when the queue's pending limit refused it.
    task_id: str | None
    #: It stands for ticks not made on time (at most one task after any downtime).
    catch_up: bool
    made_at: int


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """A schedule: the version that ticks (its latest not stopped), and the last tick of its
    name (perhaps made by an earlier version)."""

    stub: Stub
    last: Tick | None


@dataclass(frozen=True, slots=True)
class Callback:
    id: str
    task_id: str
    workspace_id: str
    url: str
    status: TaskStatus
    #: JSON body ``{"data": …}`` exactly as it is sent.
    body: bytes
    attempts: int


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one retention batch deleted: whole tasks, and rows in all (0: nothing was left)."""

    tasks: int = 0
    rows: int = 0

    def __bool__(self) -> bool:
        return self.rows > 0


@dataclass(frozen=True, slots=True)
class SweepReport:
    expired: int = 0
    retried: int = 0
    failed: int = 0
    containers_removed: int = 0


@dataclass(frozen=True, slots=True)
class ServerKeys:
    """The keys of signed output links: ``current`` signs, ``previous`` (if any) still verifies
    the links made before the last rotation."""

    current: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Revoked:
    """What a token revocation deleted: API tokens and the dashboard sessions made from them."""

    tokens: int
    sessions: int


@dataclass(frozen=True, slots=True)
class SecretInfo:
    """A workspace secret as anyone may see it: its name and dates, never its value."""

    name: str
    created_at: int
    updated_at: int


EventKind = Literal["task", "enqueued", "cancel", "warmup", "changed", "logs", "stub"]


@dataclass(frozen=True, slots=True)
class Event:
    """A change notification. ``task``: a task's status changed; ``enqueued``: new runnable work
    for ``stub_id``; ``cancel``: a RUNNING task was cancelled and its process must be killed;
    ``warmup``: start a container for ``stub_id`` without a task; ``logs``: lines of ``task_id``
    were stored; ``stub``: ``stub_id`` was stopped, started or deleted; ``changed``: another process
    wrote to an SQLite store (whose events do not cross processes) — re-read what you watch."""

    kind: EventKind
    stub_id: str
    task_id: str | None = None
    status: TaskStatus | None = None
    container_id: str | None = None
