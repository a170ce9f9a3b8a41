"""Dashboard sessions and token revocation (DESIGN A13), on both backends: a session is a random
id kept hashed, it expires, and revoking a token ends it and the token."""

from __future__ import annotations

import hashlib

from conveyor.server.store.base import Store
from conveyor.server.store.records import Revoked, Workspace
from tests.store.conftest import T0


async def test_a_session_is_made_from_a_valid_token_and_kept_hashed(
    store: Store, ws: Workspace
) -> None:
    token = await store.create_token(ws.id)
    assert await store.create_dashboard_session("not-a-token") is None
    session = await store.create_dashboard_session(token)
    assert session is not None and session != token and len(session) >= 40
    found = await store.dashboard_session(session)
    assert found is not None and found.id == ws.id
    assert await store.dashboard_session(token) is None  # the token itself is no session
    # Only hashes are stored: neither the session id nor the token appears in clear.
    rows = await store.driver.read(  # type: ignore[attr-defined]
        lambda tx: tx.execute("SELECT hash, token_hash FROM dashboard_sessions")
    )
    assert [tuple(r) for r in rows] == [
        (hashlib.sha256(session.encode()).hexdigest(), hashlib.sha256(token.encode()).hexdigest())
    ]


async def test_a_session_expires_and_can_be_deleted(store: Store, ws: Workspace) -> None:
    token = await store.create_token(ws.id)
    session = await store.create_dashboard_session(token, ttl_s=60, now=T0)
    assert session is not None
    assert await store.dashboard_session(session, now=T0 + 59) is not None
    assert await store.dashboard_session(session, now=T0 + 60) is None
    other = await store.create_dashboard_session(token)
    assert other is not None and other != session
    await store.delete_dashboard_session(other)
    assert await store.dashboard_session(other) is None
    await store.delete_dashboard_session(other)  # twice: nothing to do, no error


async def test_revoking_a_token_ends_it_and_its_sessions_only(
    store: Store, ws: Workspace
) -> None:
    token, kept = await store.create_token(ws.id), await store.create_token(ws.id)
    sessions = [await store.create_dashboard_session(token) for _ in range(2)]
    other = await store.create_dashboard_session(kept)
    assert await store.revoke_token(token) == Revoked(tokens=1, sessions=2)
    assert await store.authenticate(token) is None
    assert await store.create_dashboard_session(token) is None
    for session in sessions:
        assert session is not None and await store.dashboard_session(session) is None
    assert await store.authenticate(kept) is not None
    assert other is not None and await store.dashboard_session(other) is not None
    assert await store.revoke_token(token) == Revoked(tokens=0, sessions=0)


async def test_revoking_a_workspaces_tokens_leaves_other_workspaces(
    store: Store, ws: Workspace
) -> None:
    theirs = await store.ensure_workspace("other")
    mine = [await store.create_token(ws.id) for _ in range(3)]
    their_token = await store.create_token(theirs.id)
    my_session = await store.create_dashboard_session(mine[0])
    their_session = await store.create_dashboard_session(their_token)
    assert await store.revoke_workspace_tokens("nosuch") is None
    assert await store.revoke_workspace_tokens(ws.name) == Revoked(tokens=3, sessions=1)
    for token in mine:
        assert await store.authenticate(token) is None
    assert my_session is not None and await store.dashboard_session(my_session) is None
    assert await store.authenticate(their_token) is not None
    assert their_session is not None and await store.dashboard_session(their_session) is not None
    # The workspace stays; a new token works at once.
    fresh = await store.create_token(ws.id)
    assert await store.authenticate(fresh) is not None
