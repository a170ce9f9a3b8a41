"""Tokens: ``Authorization: Bearer <token>`` everywhere; invocation routes also take
``Basic <token>`` (or Basic ``user:token``) and a bare token."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from fastapi import Request

from conveyor.server.gateway.errors import Unauthorized
from conveyor.server.gateway.state import gateway_state
from conveyor.server.store.records import Workspace

_Candidates = Callable[[str], list[str]]


def bearer_candidates(header: str) -> list[str]:
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return [value.strip()]
    return []


def invocation_candidates(header: str) -> list[str]:
    """Every token the header may carry, most likely first."""
    header = header.strip()
    scheme, sep, value = header.partition(" ")
    value = value.strip()
    if sep and scheme.lower() == "bearer":
        return [value] if value else []
    if sep and scheme.lower() == "basic":
        candidates = [value] if value else []
        decoded = _b64decode(value)
        if decoded:
            _user, colon, password = decoded.partition(":")
            if colon and password:
                candidates.insert(0, password)
            candidates.append(decoded)
        return _unique(candidates)
    return [header] if header and not sep else []


async def require_workspace(request: Request) -> Workspace:
    """The caller's workspace from a Bearer token, or 401."""
    return await _authenticate(request, bearer_candidates)


async def invocation_workspace(request: Request) -> Workspace:
    """The caller's workspace from a Bearer, Basic or bare token, or 401."""
    return await _authenticate(request, invocation_candidates)


async def optional_workspace(request: Request) -> Workspace | None:
    """The caller's workspace if a valid Bearer token was sent, else None."""
    try:
        return await require_workspace(request)
    except Unauthorized:
        return None


async def _authenticate(request: Request, candidates_of: _Candidates) -> Workspace:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>'")
    state = gateway_state(request)
    for token in candidates_of(header):
        workspace = await state.authenticate(token)
        if workspace is not None:
            return workspace
    raise Unauthorized("invalid token")


def _b64decode(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
