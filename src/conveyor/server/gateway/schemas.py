"""Pydantic models that describe the JSON of each route in ``/openapi.json``.

Routes build plain dicts (rendered by orjson); these models only document them, and the
schemathesis test checks that the answers match.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

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
    container_id: str
    outputs: list[OutputOut]
    stats: StatsOut
    stub: StubOut
    deployment: DeploymentOut
    result: Any
    error: TaskErrorOut | None
    attempts: int


class TaskPageOut(BaseModel):
    data: list[TaskOut]
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


class HealthOut(BaseModel):
    status: str
    #: ``/readyz`` of ``conveyor serve``: whether its agent sandboxes worker processes.
    sandbox: bool | None = None
