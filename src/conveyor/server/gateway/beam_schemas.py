"""Pydantic models that document the JSON of Beam's ``/api/v1`` dialect (``beam_views``) in
``/openapi.json``; as ``schemas``, they only describe, and the schemathesis test checks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from conveyor.server.gateway.schemas import OutputOut, StatsOut

#: Conveyor's statuses in Beam's words (``ERROR`` for ``FAILED``).
BeamStatus = Literal[
    "PENDING", "RUNNING", "COMPLETE", "RETRY", "CANCELLED", "TIMEOUT", "EXPIRED", "ERROR",
]


class BeamWorkspaceOut(BaseModel):
    id: str
    external_id: str
    name: str
    created_at: str
    updated_at: str


class BeamStubOut(BaseModel):
    id: str
    external_id: str
    name: str
    type: str
    config: str
    config_version: int
    created_at: str
    updated_at: str


class BeamTaskDeploymentOut(BaseModel):
    id: str
    name: str
    version: int


class BeamTaskOut(BaseModel):
    id: str
    external_id: str
    status: BeamStatus
    #: ``<type>: <message>`` of the error that ended the task; "" when none did.
    failure_reason: str
    container_id: str
    started_at: str | None
    ended_at: str | None
    created_at: str
    updated_at: str
    deployment: BeamTaskDeploymentOut
    outputs: list[OutputOut]
    stats: StatsOut
    #: As Beam sends it: JSON, or ``{"base64": <a pickle>}``.
    result: Any
    workspace: BeamWorkspaceOut
    stub: BeamStubOut


class BeamTaskPageOut(BaseModel):
    data: list[BeamTaskOut]
    #: The ``cursor`` of the next page; "" after the last.
    next: str


class BeamDeploymentOut(BaseModel):
    id: str
    external_id: str
    name: str
    active: bool
    stub_type: str
    version: int
    created_at: str
    updated_at: str
    stub_id: str
    workspace_id: str
    workspace: BeamWorkspaceOut
    stub: BeamStubOut
    #: Where to enqueue onto it.
    url: str


class BeamDeploymentPageOut(BaseModel):
    data: list[BeamDeploymentOut]
    #: The ``cursor`` of the next page; "" after the last.
    next: str


class BeamUrlOut(BaseModel):
    url: str
