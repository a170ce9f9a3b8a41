"""The server keys of signed output links, shared by every gateway on the store.

The first read on a new store creates generation 1 with ``INSERT … ON CONFLICT DO NOTHING`` and
reads back whichever insert won, so gateways starting together agree on one key. A rotation
inserts the next generation and drops all but it and the one before.
"""

from __future__ import annotations

import secrets

from conveyor.server.store.driver import Driver, Row, Tx
from conveyor.server.store.records import ServerKeys
from conveyor.server.store.row_mapping import now_us

_NEWEST_TWO = "SELECT secret FROM server_keys ORDER BY generation DESC LIMIT 2"


def _keys(rows: list[Row]) -> ServerKeys:
    return ServerKeys(rows[0][0], rows[1][0] if len(rows) > 1 else None)


class ServerKeysMixin:
    """The server key methods of ``SqlStore``."""

    driver: Driver

    async def server_keys(self) -> ServerKeys:
        rows = await self.driver.read(lambda tx: tx.execute(_NEWEST_TWO))
        if rows:
            return _keys(rows)

        async def create(tx: Tx) -> list[Row]:
            await tx.execute(
                "INSERT INTO server_keys (generation, secret, created_at) VALUES (1, ?, ?)"
                " ON CONFLICT (generation) DO NOTHING",
                [secrets.token_hex(32), now_us(None)],
            )
            return await tx.execute(_NEWEST_TWO)

        return _keys(await self.driver.write(create))

    async def rotate_server_key(self) -> ServerKeys:
        async def rotate(tx: Tx) -> list[Row]:
            # A rotation running at the same moment may take this generation first: that
            # one's key is then the new one, which is all a rotation promises.
            await tx.execute(
                "INSERT INTO server_keys (generation, secret, created_at)"
                " SELECT COALESCE(MAX(generation), 0) + 1, ?, ? FROM server_keys"
                " WHERE TRUE ON CONFLICT (generation) DO NOTHING",  # WHERE: SQLite's parser
                [secrets.token_hex(32), now_us(None)],
            )
            await tx.execute(
                "DELETE FROM server_keys"
                " WHERE generation < (SELECT MAX(generation) FROM server_keys) - 1"
            )
            return await tx.execute(_NEWEST_TWO)

        return _keys(await self.driver.write(rotate))
