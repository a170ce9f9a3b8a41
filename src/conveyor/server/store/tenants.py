"""Workspaces and their tokens in the SQL store; operator tokens, kept apart from both.

Tokens are stored as SHA-256 hashes; a token is a workspace's or an operator's, never both.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

from conveyor.errors import NotFound, StoreError
from conveyor.server.store.driver import Driver, Tx
from conveyor.server.store.records import Workspace
from conveyor.server.store.row_mapping import WORKSPACE_COLS, now_us, to_workspace


class TenantsMixin:
    """The workspace and token methods of ``SqlStore``."""

    driver: Driver

    async def ensure_workspace(self, name: str) -> Workspace:
        async def op(tx: Tx) -> Workspace:
            await tx.execute(
                "INSERT INTO workspaces (id, name, signing_secret, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                [str(uuid.uuid4()), name, secrets.token_hex(32), now_us(None)],
            )
            rows = await tx.execute(
                f"SELECT {WORKSPACE_COLS} FROM workspaces WHERE name = ?", [name]
            )
            return to_workspace(rows[0])

        return await self.driver.write(op)

    async def get_workspace(self, workspace_id: str) -> Workspace | None:
        rows = await self.driver.read(
            lambda tx: tx.execute(
                f"SELECT {WORKSPACE_COLS} FROM workspaces WHERE id = ?", [workspace_id]
            )
        )
        return to_workspace(rows[0]) if rows else None

    async def create_token(self, workspace_id: str, token: str | None = None) -> str:
        clear = token if token is not None else secrets.token_urlsafe(32)
        digest = hashlib.sha256(clear.encode()).hexdigest()

        async def op(tx: Tx) -> None:
            if not await tx.execute("SELECT 1 FROM workspaces WHERE id = ?", [workspace_id]):
                raise NotFound(f"workspace {workspace_id} not found")
            if await tx.execute("SELECT 1 FROM operator_tokens WHERE hash = ?", [digest]):
                raise StoreError("this token is an operator token")
            await tx.execute(
                "INSERT INTO tokens (hash, workspace_id, created_at) VALUES (?, ?, ?)"
                " ON CONFLICT (hash) DO NOTHING",
                [digest, workspace_id, now_us(None)],
            )
            owner = await tx.execute("SELECT workspace_id FROM tokens WHERE hash = ?", [digest])
            if owner[0][0] != workspace_id:
                raise StoreError("this token already belongs to another workspace")

        await self.driver.write(op)
        return clear

    async def authenticate(self, token: str) -> Workspace | None:
        digest = hashlib.sha256(token.encode()).hexdigest()
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT w.id, w.name, w.signing_secret, w.created_at FROM tokens k"
                " JOIN workspaces w ON w.id = k.workspace_id WHERE k.hash = ?",
                [digest],
            )
        )
        return to_workspace(rows[0]) if rows else None

    async def create_operator_token(self, token: str | None = None) -> str:
        clear = token if token is not None else secrets.token_urlsafe(32)
        digest = hashlib.sha256(clear.encode()).hexdigest()

        async def op(tx: Tx) -> None:
            if await tx.execute("SELECT 1 FROM tokens WHERE hash = ?", [digest]):
                raise StoreError("this token already belongs to a workspace")
            await tx.execute(
                "INSERT INTO operator_tokens (hash, created_at) VALUES (?, ?)"
                " ON CONFLICT (hash) DO NOTHING",
                [digest, now_us(None)],
            )

        await self.driver.write(op)
        return clear

    async def is_operator_token(self, token: str) -> bool:
        digest = hashlib.sha256(token.encode()).hexdigest()
        rows = await self.driver.read(
            lambda tx: tx.execute("SELECT 1 FROM operator_tokens WHERE hash = ?", [digest])
        )
        return bool(rows)
