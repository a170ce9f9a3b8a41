"""Workspace secrets in the SQL store (DESIGN A9): ciphertext only, by workspace and name.

Encryption happens outside the store, with a key the store never sees
(``conveyor.server.secret_key``): these rows are of no use without it.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.records import SecretInfo
from conveyor.server.store.row_mapping import now_us, placeholders


def _info(row: Row) -> SecretInfo:
    return SecretInfo(str(row[0]), int(row[1]), int(row[2]))


class SecretsMixin:
    """The secret methods of ``SqlStore``."""

    driver: Driver

    async def put_secret(
        self, workspace_id: str, name: str, ciphertext: str, now: float | None = None
    ) -> SecretInfo:
        t = now_us(now)
        rows = await self.driver.write(
            lambda tx: tx.execute(
                "INSERT INTO secrets (workspace_id, name, ciphertext, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (workspace_id, name) DO UPDATE"
                " SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at"
                " RETURNING name, created_at, updated_at",
                [workspace_id, name, ciphertext, t, t],
            )
        )
        return _info(rows[0])

    async def list_secrets(self, workspace_id: str) -> list[SecretInfo]:
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT name, created_at, updated_at FROM secrets WHERE workspace_id = ?"
                " ORDER BY name",
                [workspace_id],
            )
        )
        return [_info(row) for row in rows]

    async def delete_secret(self, workspace_id: str, name: str) -> bool:
        rows = await self.driver.write(
            lambda tx: tx.execute(
                "DELETE FROM secrets WHERE workspace_id = ? AND name = ? RETURNING name",
                [workspace_id, name],
            )
        )
        return bool(rows)

    async def secret_ciphertexts(
        self, workspace_id: str, names: Collection[str]
    ) -> dict[str, str]:
        if not names:
            return {}
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT name, ciphertext FROM secrets WHERE workspace_id = ?"
                f" AND name IN {placeholders(len(names))}",
                [workspace_id, *names],
            )
        )
        return {str(name): str(ciphertext) for name, ciphertext in rows}

    async def any_secret(self) -> tuple[str, str] | None:
        rows = await self.driver.read(
            lambda tx: tx.execute("SELECT name, ciphertext FROM secrets LIMIT 1")
        )
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    async def rewrap_secrets(self, rewrap: Callable[[str, str], str]) -> int:
        lock = self.driver.dialect.for_update  # a secret put meanwhile is not overwritten

        async def op(tx: Tx) -> int:
            rows = await tx.execute(f"SELECT workspace_id, name, ciphertext FROM secrets{lock}")
            if rows:
                await tx.executemany(
                    "UPDATE secrets SET ciphertext = ? WHERE workspace_id = ? AND name = ?",
                    [(rewrap(name, ciphertext), workspace_id, name)
                     for workspace_id, name, ciphertext in rows],
                )
            return len(rows)

        return await self.driver.write(op)
