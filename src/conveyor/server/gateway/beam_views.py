"""Conveyor's records as the JSON of Beam's ``/api/v1`` dialect (DESIGN A12).

The shapes are those Beam's gateway serializes (beta9 ``pkg/types/backend.go``): snake_case,
``id`` and ``external_id`` both the record's id, ISO timestamps, ``ERROR`` where conveyor says
``FAILED``. Fields of things conveyor does not have (apps, subdomains, external workspaces)
are left out; neither client reads them.

A task is built from its ``/v2`` JSON (``views.task_json``), so both dialects show the same
signed output links and counts.
"""

from __future__ import annotations

import base64
import binascii
import pickle
from typing import Any
from urllib.parse import quote

from conveyor.clock import iso
from conveyor.server.gateway import views
from conveyor.server.store.records import SERVE, Stub, Workspace
from conveyor.tasks import TaskStatus

#: Beam's name of each conveyor status that it names differently.
_STATUS_NAMES = {TaskStatus.FAILED.value: "ERROR"}
#: Old enough for any Python the clients run on (3.8 reads protocol 5; 4 costs nothing here).
_PICKLE_PROTOCOL = 4


def status_name(status: str) -> str:
    return _STATUS_NAMES.get(status, status)


def workspace_json(workspace: Workspace) -> dict[str, Any]:
    created = iso(workspace.created_at)
    return {"id": workspace.id, "external_id": workspace.id, "name": workspace.name,
            "created_at": created, "updated_at": created}


def stub_json(stub: dict[str, Any]) -> dict[str, Any]:
    """A stub, from its ``/v2`` JSON."""
    return {"id": stub["id"], "external_id": stub["id"], "name": stub["name"],
            "type": stub["type"], "config": stub["config"],
            "config_version": stub["config_version"], "created_at": stub["created_at"],
            "updated_at": stub["updated_at"]}


def task_json(task: dict[str, Any], workspace: Workspace) -> dict[str, Any]:
    """A task, from its ``/v2`` JSON."""
    return {
        "id": task["id"],
        "external_id": task["id"],
        "status": status_name(task["status"]),
        "failure_reason": _failure_reason(task["error"]),
        "container_id": task["container_id"],
        "started_at": task["started_at"],
        "ended_at": task["ended_at"],
        "created_at": task["created_at"],
        "updated_at": task["updated_at"],
        "deployment": {"id": task["stub"]["id"], **task["deployment"]},
        "outputs": task["outputs"],
        "stats": task["stats"],
        "result": result_json(task["result"]),
        "workspace": workspace_json(workspace),
        "stub": stub_json(task["stub"]),
    }


def deployment_json(stub: Stub, workspace: Workspace, base_url: str) -> dict[str, Any]:
    """A deployment of Beam's dialect: one conveyor stub (deployed or served version)."""
    stub_view = views.stub_json(stub)
    return {
        "id": stub.id,
        "external_id": stub.id,
        "name": stub.name,
        "active": stub.active,  # a stopped version (DESIGN A11) takes no tasks
        "stub_type": stub.type,
        "version": stub.version,
        "created_at": stub_view["created_at"],
        "updated_at": stub_view["updated_at"],
        "stub_id": stub.id,
        "workspace_id": workspace.id,
        "workspace": workspace_json(workspace),
        "stub": stub_json(stub_view),
        "url": stub_url(base_url, stub),
    }


def stub_url(base_url: str, stub: Stub) -> str:
    """Where a client enqueues onto ``stub``: conveyor's own routes, as Beam builds its own
    (a served stub by id, a deployed version by name and version)."""
    if stub.type == SERVE:
        return f"{base_url}/taskqueue/id/{quote(stub.id, safe='')}"
    return views.invocation_url(base_url, stub.name, stub.version)


def result_json(value: Any) -> Any:
    """A result as Beam's clients decode it.

    The Python client unpickles any result object with a truthy ``base64`` key (Beam sends
    results that are not JSON, pickles, that way). So such a value goes out as a pickle of what
    it stands for: conveyor's bytes form (``{"base64": …}`` alone) as the bytes, any other
    object as itself; every other result is sent as it is.
    """
    if not (isinstance(value, dict) and value.get("base64")):
        return value
    raw = _bytes_of(value)
    pickled = pickle.dumps(value if raw is None else raw, protocol=_PICKLE_PROTOCOL)
    return {"base64": base64.b64encode(pickled).decode("ascii")}


def _bytes_of(value: dict[str, Any]) -> bytes | None:
    encoded = value["base64"]
    if len(value) != 1 or not isinstance(encoded, str):
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _failure_reason(error: dict[str, str] | None) -> str:
    if error is None:
        return ""
    return f"{error['type']}: {error['message']}" if error["message"] else error["type"]
