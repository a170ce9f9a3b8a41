"""``/v2/secret/``: the caller's workspace secrets (DESIGN A9). A value goes in, encrypted here
before it reaches the store, and never comes out: answers carry names and dates, and no
error message repeats what was sent."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request

from conveyor.clock import iso
from conveyor.errors import NotFound
from conveyor.queue_config import is_secret_name
from conveyor.server.gateway.auth import require_workspace
from conveyor.server.gateway.bodies import read_object
from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.responses import OrjsonResponse
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.records import SecretInfo, Workspace

#: A value's UTF-8 bytes at most: an environment variable, not a file.
MAX_VALUE_BYTES = 64 * 1024
#: Secrets one workspace holds at most (DESIGN A13: bounded per workspace).
MAX_SECRETS = 1000


def secret_json(info: SecretInfo) -> dict[str, Any]:
    return {"name": info.name, "created_at": iso(info.created_at),
            "updated_at": iso(info.updated_at)}  # fmt: skip


def _name_and_value(body: dict[str, Any]) -> tuple[str, str]:
    unknown = sorted(set(body) - {"name", "value"})
    if unknown:
        raise BadRequest(f"unknown keys {unknown}: send only name and value")
    name, value = body.get("name"), body.get("value")
    if not is_secret_name(name):
        raise BadRequest(
            "name must be upper-case letters, digits and '_', not starting with a digit "
            "(at most 256), such as S3_KEY"
        )
    assert isinstance(name, str)
    if not isinstance(value, str):
        raise BadRequest("value must be a string")
    if "\x00" in value or len(value.encode()) > MAX_VALUE_BYTES:
        raise BadRequest(f"value must be at most {MAX_VALUE_BYTES} bytes (UTF-8), without NUL")
    return name, value


async def put_secret(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Create the secret, or give it a new value (containers started afterwards get it)."""
    name, value = _name_and_value(await read_object(request))
    state = gateway_state(request)
    held = await state.store.list_secrets(workspace.id)
    if len(held) >= MAX_SECRETS and all(info.name != name for info in held):
        raise BadRequest(f"a workspace holds at most {MAX_SECRETS} secrets")
    ciphertext = state.secret_key.encrypt(value)
    return OrjsonResponse(secret_json(await state.store.put_secret(workspace.id, name, ciphertext)))


async def list_secrets(
    request: Request,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Names and dates, by name; never values."""
    held = await gateway_state(request).store.list_secrets(workspace.id)
    return OrjsonResponse({"data": [secret_json(info) for info in held]})


async def delete_secret(
    request: Request,
    name: str,
    workspace: Workspace = Depends(require_workspace),  # noqa: B008
) -> OrjsonResponse:
    """Containers started afterwards no longer get it: their tasks fail with
    ``SecretNotFound`` while their queue names it."""
    if not await gateway_state(request).store.delete_secret(workspace.id, name):
        raise NotFound(f"unknown secret {name!r}")
    return OrjsonResponse({})
