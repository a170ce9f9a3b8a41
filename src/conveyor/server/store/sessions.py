"""Dashboard sessions and token revocation (DESIGN A13).

Signing in to the dashboard with an API token makes a session: a random id, given to the
browser in a cookie and kept here only as its SHA-256, with the workspace, the hash of the token
it was made from and an expiry. A session is valid while it has not expired *and* its token
still exists, so revoking a token (``revoke_token``, ``revoke_workspace_tokens``) ends every
session made from it even if a delete were missed.
"""

from __future__ import annotations

import hashlib
import secrets

from conveyor.server.store.base import DASHBOARD_SESSION_TTL_S
from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.records import Revoked, Workspace
from conveyor.server.store.row_mapping import now_us, to_workspace


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class SessionsMixin:
    """The dashboard session and token revocation methods of ``SqlStore``."""

    driver: Driver

    async def create_dashboard_session(
        self, token: str, ttl_s: float = DASHBOARD_SESSION_TTL_S, now: float | None = None
    ) -> str | None:
        token_hash = _digest(token)
        session = secrets.token_urlsafe(32)
        t = now_us(now)

        async def op(tx: Tx) -> bool:
            # Sessions past their expiry are of no use: sign-ins (rare) sweep them.
            await tx.execute("DELETE FROM dashboard_sessions WHERE expires_at <= ?", [t])
            made = await tx.execute(
                "INSERT INTO dashboard_sessions"
                " (hash, workspace_id, token_hash, created_at, expires_at)"
                " SELECT ?, workspace_id, hash, ?, ? FROM tokens WHERE hash = ?"
                " RETURNING hash",
                [_digest(session), t, t + int(ttl_s * 1_000_000), token_hash],
            )
            return bool(made)

        return session if await self.driver.write(op) else None

    async def dashboard_session(self, session: str, now: float | None = None) -> Workspace | None:
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT w.id, w.name, w.signing_secret, w.created_at FROM dashboard_sessions s"
                " JOIN tokens k ON k.hash = s.token_hash"
                " JOIN workspaces w ON w.id = s.workspace_id"
                " WHERE s.hash = ? AND s.expires_at > ?",
                [_digest(session), now_us(now)],
            )
        )
        return to_workspace(rows[0]) if rows else None

    async def delete_dashboard_session(self, session: str) -> None:
        await self.driver.write(
            lambda tx: tx.execute(
                "DELETE FROM dashboard_sessions WHERE hash = ?", [_digest(session)]
            )
        )

    async def revoke_token(self, token: str) -> Revoked:
        token_hash = _digest(token)

        async def op(tx: Tx) -> Revoked:
            sessions = await tx.execute(
                "DELETE FROM dashboard_sessions WHERE token_hash = ? RETURNING hash", [token_hash]
            )
            tokens = await tx.execute(
                "DELETE FROM tokens WHERE hash = ? RETURNING hash", [token_hash]
            )
            return Revoked(tokens=len(tokens), sessions=len(sessions))

        return await self.driver.write(op)

    async def revoke_workspace_tokens(self, workspace_name: str) -> Revoked | None:
        async def op(tx: Tx) -> Revoked | None:
            found = await tx.execute("SELECT id FROM workspaces WHERE name = ?", [workspace_name])
            if not found:
                return None
            workspace_id = found[0][0]
            sessions = await tx.execute(
                "DELETE FROM dashboard_sessions WHERE workspace_id = ? RETURNING hash",
                [workspace_id],
            )
            tokens = await tx.execute(
                "DELETE FROM tokens WHERE workspace_id = ? RETURNING hash", [workspace_id]
            )
            return Revoked(tokens=len(tokens), sessions=len(sessions))

        return await self.driver.write(op)
