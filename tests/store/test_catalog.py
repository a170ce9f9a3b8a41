"""Workspaces, tokens, stubs and code objects."""

from __future__ import annotations

import pytest

from conveyor.errors import NotFound, StoreError
from conveyor.server.store.base import Store
from conveyor.server.store.records import DEPLOYMENT, SERVE, Workspace

from .conftest import CONFIG


async def test_ensure_workspace_is_idempotent(store: Store) -> None:
    first = await store.ensure_workspace("acme")
    again = await store.ensure_workspace("acme")
    other = await store.ensure_workspace("other")
    assert first == again
    assert other.id != first.id and other.signing_secret != first.signing_secret
    assert len(first.signing_secret) >= 32
    assert await store.get_workspace(first.id) == first
    assert await store.get_workspace("no-such-id") is None


async def test_tokens_authenticate_their_workspace_only(store: Store, ws: Workspace) -> None:
    token = await store.create_token(ws.id)
    assert await store.authenticate(token) == ws
    assert await store.authenticate(token + "x") is None
    fixed = await store.create_token(ws.id, "dev-token")
    assert fixed == "dev-token"
    assert await store.create_token(ws.id, "dev-token") == "dev-token"
    assert await store.authenticate("dev-token") == ws
    other = await store.ensure_workspace("other")
    with pytest.raises(StoreError):
        await store.create_token(other.id, "dev-token")
    with pytest.raises(NotFound):
        await store.create_token("no-such-workspace")


async def test_deploy_makes_next_version_and_resolves(store: Store, ws: Workspace) -> None:
    v1 = await store.deploy_stub(ws.id, "q", CONFIG, b"code-1")
    v2 = await store.deploy_stub(ws.id, "q", {**CONFIG, "ttl": 5}, b"code-2")
    other = await store.deploy_stub(ws.id, "r", CONFIG, b"code-1")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.type == DEPLOYMENT and v1.config_version == 1
    assert v2.queue_config.ttl == 5
    assert other.object_id == v1.object_id  # same bytes, one object
    assert await store.get_object(v2.object_id) == b"code-2"
    assert await store.resolve_stub(ws.id, "q") == v2
    assert await store.resolve_stub(ws.id, "q", 1) == v1
    assert await store.resolve_stub(ws.id, "q", 3) is None
    assert await store.resolve_stub(ws.id, "nope") is None
    assert await store.get_stub(v1.id) == v1
    assert await store.get_stub("not-a-uuid") is None
    assert await store.get_stub("00000000-0000-0000-0000-000000000000") is None
    assert [s.id for s in await store.list_stubs(ws.id)] == [v1.id, v2.id, other.id]
    assert await store.list_stubs(types=[SERVE]) == []
    with pytest.raises(NotFound):
        await store.get_object(10_000)


async def test_serve_stub_updates_in_place(store: Store, ws: Workspace) -> None:
    await store.deploy_stub(ws.id, "q", CONFIG, b"code")
    first = await store.upsert_serve_stub(ws.id, "q", CONFIG, b"code")
    assert first.type == SERVE and first.version == 2 and first.config_version == 1
    same = await store.upsert_serve_stub(ws.id, "q", CONFIG, b"code")
    assert same == first
    changed = await store.upsert_serve_stub(ws.id, "q", {**CONFIG, "ttl": 9}, b"code")
    assert changed.id == first.id and changed.version == 2
    assert changed.config_version == 2 and changed.queue_config.ttl == 9
    assert changed.updated_at >= first.updated_at
    new_code = await store.upsert_serve_stub(ws.id, "q", {**CONFIG, "ttl": 9}, b"code v2")
    assert new_code.config_version == 2 and new_code.object_id != first.object_id
    assert [s.id for s in await store.list_stubs(ws.id, [SERVE])] == [first.id]
