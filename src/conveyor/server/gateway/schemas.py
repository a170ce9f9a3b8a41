"""Pydantic models that describe the JSON of each route in ``/openapi.json``.

Routes build plain dicts (rendered by orjson); these models only document them, and the
schemathesis test checks that the answers match.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from conveyor.server.store.records import AttemptOutcome, LogStream
from conveyor.tasks import TaskStatus


class ErrorBody(BaseModel):
    error: str


class TaskIdOut(BaseModel):
    task_id: str


class TaskIdsOut(BaseModel):
    task_ids: list[str]


class EmptyOut(BaseModel):
    pass


class OutputOut(BaseModel):
    name: str
    url: str
    expires_in: int


class StatsOut(BaseModel):
    active_containers: int
    queue_depth: int


class StubOut(BaseModel):
    id: str
    name: str
    type: str
    config: str
    config_version: int
    object_id: int
    created_at: str
    updated_at: str


class DeploymentOut(BaseModel):
    name: str
    version: int


class TaskErrorOut(BaseModel):
    model_config = {"extra": "allow"}
    type: str | None = None
    message: str | None = None
    traceback: str | None = None


class TaskOut(BaseModel):
    id: str
    status: TaskStatus
    created_at: str
    started_at: str | None
    ended_at: str | None
    updated_at: str
    #: Not started before this time (Conveyor-Delay, Conveyor-Run-At, a schedule's tick);
    #: null when enqueued to run at once.
    run_at: str | None
    #: ``ended_at - started_at`` in seconds; null until both are set.
    duration_s: float | None
    container_id: str
    outputs: list[OutputOut]
    stats: StatsOut
    stub: StubOut
    deployment: DeploymentOut
    result: Any
    error: TaskErrorOut | None
    attempts: int
    #: The task this one re-runs (a replay), or null.
    replay_of: str | None


class TaskPageOut(BaseModel):
    data: list[TaskOut]
    next_cursor: str | None


class TaskInputOut(BaseModel):
    args: list[Any]
    kwargs: dict[str, Any]


class ProcessExitOut(BaseModel):
    #: The process's exit code, or null when a signal killed it.
    code: int | None
    #: The signal's name, e.g. ``SIGKILL``.
    signal: str | None


class AttemptOut(BaseModel):
    attempt: int
    container_id: str
    started_at: str
    ended_at: str | None
    #: Null while the attempt runs. ``CRASHED``: its process died; ``LOST``: its lease ran out.
    outcome: AttemptOutcome | None
    error: TaskErrorOut | None
    #: How the attempt's process ended, when it died.
    exit: ProcessExitOut | None


class AttemptListOut(BaseModel):
    data: list[AttemptOut]


class LogLineOut(BaseModel):
    attempt: int
    stream: LogStream
    timestamp: str
    line: str


class LogPageOut(BaseModel):
    data: list[LogLineOut]
    #: Pass it as ``cursor`` for the lines after this page; null once the task has ended and
    #: no line is left.
    next_cursor: str | None


class CancelOut(BaseModel):
    cancelled: list[str]
    already_finished: list[str]
    not_found: list[str]


class VersionOut(BaseModel):
    version: int
    stub_id: str
    type: str
    created_at: str
    #: False once stopped: it takes no new tasks and keeps no containers.
    active: bool
    #: Live agents that run this version; 0: its tasks wait until one starts.
    agents: int


class QueueOut(BaseModel):
    name: str
    versions: list[VersionOut]
    #: The version ``/taskqueue/{name}`` (no version) enqueues onto.
    route_version: int
    queue_depth: int
    active_containers: int
    counts: dict[str, int]


class QueueListOut(BaseModel):
    data: list[QueueOut]


class TickOut(BaseModel):
    #: The tick's instant.
    at: str
    #: The version that made it.
    stub_id: str
    #: Its task; null when the queue's pending limit refused it.
    task_id: str | None
    #: It stands for ticks not made on time (one task after any downtime).
    catch_up: bool
    made_at: str


class ScheduleOut(BaseModel):
    name: str
    #: The version that ticks: the latest.
    version: int
    stub_id: str
    type: str
    when: str | None
    timezone: str | None
    #: The next ticks, soonest first.
    next: list[str]
    last_tick: TickOut | None


class ScheduleListOut(BaseModel):
    data: list[ScheduleOut]


class DeployOut(BaseModel):
    stub_id: str
    name: str
    version: int
    url: str


class SecretOut(BaseModel):
    """A secret: its name and dates; its value is never shown."""

    name: str
    created_at: str
    updated_at: str


class SecretListOut(BaseModel):
    data: list[SecretOut]


class DeploymentVersionOut(BaseModel):
    stub_id: str
    name: str
    version: int
    type: str
    #: False once stopped: it takes no new tasks (409), keeps no containers, makes no ticks.
    active: bool
    created_at: str
    #: Live agents that run this version (none runs a stopped one).
    agents: int


class DeploymentListOut(BaseModel):
    data: list[DeploymentVersionOut]


class DeletedOut(BaseModel):
    stub_id: str
    #: Tasks deleted with the version.
    deleted_tasks: int


class HealthOut(BaseModel):
    status: str
    #: ``/readyz`` of ``conveyor serve``: whether its agent sandboxes worker processes.
    sandbox: bool | None = None
