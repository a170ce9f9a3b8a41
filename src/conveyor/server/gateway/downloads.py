"""``GET /v2/output/{output_id}/{name}``: a task's output file, by signed link or by token."""

from __future__ import annotations

import mimetypes
from urllib.parse import quote

from fastapi import Request
from starlette.responses import Response

from conveyor.clock import now
from conveyor.errors import NotFound
from conveyor.server.gateway.auth import optional_workspace
from conveyor.server.gateway.errors import Forbidden
from conveyor.server.gateway.state import gateway_state


async def download_output(
    request: Request,
    output_id: str,
    name: str,
    expires: str | None = None,
    signature: str | None = None,
) -> Response:
    """A valid, unexpired signature needs no token. Without one, a Bearer token of the
    task's workspace also works; anything else is 403."""
    state = gateway_state(request)
    signed = await state.signer.is_valid(output_id, name, expires, signature, now())
    workspace = None if signed else await optional_workspace(request)
    if not signed and workspace is None:
        raise Forbidden("output link is invalid or expired")
    found = await state.store.get_output(output_id)
    if found is None or found[0].name != name:
        raise NotFound(f"unknown output {output_id}/{name}")
    info, data = found
    if workspace is not None and await state.store.get_task(info.task_id, workspace.id) is None:
        raise NotFound(f"unknown output {output_id}/{name}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
    return Response(data, media_type=media_type, headers={"Content-Disposition": disposition})
