"""The store over SQL: one implementation of ``Store`` for both backends.

Statements are written once with ``?`` placeholders; a :class:`Driver` runs them (translating
placeholders) and supplies the few dialect fragments that differ. Every status write is a
guarded ``UPDATE … WHERE status IN <sources>`` built from ``conveyor.tasks``; writes from an
attempt are also fenced (``AND fence = ?``), so a refused write matches no row and changes nothing.

:class:`SqlStore` holds stubs and containers here and takes the rest from its parts:
workspaces and tokens (``tenants.py``), task attempts (``attempts.py``, ``finish.py``,
``sweep.py``), reads (``queries.py``), the callbacks outbox (``outbox.py``), the server keys
(``keys.py``), the agents directory (``agents.py``), dashboard sessions and token revocation
(``sessions.py``), workspace secrets (``workspace_secrets.py``), group-committed enqueues
(``group_commit.py``), stopping, starting, deleting and replaying (``versions.py``) and
retention (``retention.py``). The driver seam is in
``driver.py``, re-exported here.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from conveyor import clock
from conveyor.errors import ConfigError, NotFound, StaleRoute, StoreError
from conveyor.server.store.agents import AgentsMixin
from conveyor.server.store.attempts import AttemptsMixin
from conveyor.server.store.base import CONTAINER_STALE_S, DEFAULT_MAX_OUTPUT_BYTES, Subscription
from conveyor.server.store.driver import Dialect, Driver, Migration, Row, Tx, load_migrations
from conveyor.server.store.finish import FinishMixin
from conveyor.server.store.group_commit import Enqueuer
from conveyor.server.store.history import HistoryMixin
from conveyor.server.store.keys import ServerKeysMixin
from conveyor.server.store.outbox import OutboxMixin
from conveyor.server.store.queries import QueriesMixin, StatsCache
from conveyor.server.store.records import Event, NewTask, Stub, StubType, stub_type
from conveyor.server.store.retention import RetentionMixin
from conveyor.server.store.routes import RouteCache
from conveyor.server.store.row_mapping import (
    STUB_COLS,
    canonical_id,
    config_text,
    now_us,
    placeholders,
    to_stub,
)
from conveyor.server.store.sessions import SessionsMixin
from conveyor.server.store.sweep import SweepMixin
from conveyor.server.store.task_logs import LogsMixin
from conveyor.server.store.tenants import TenantsMixin
from conveyor.server.store.ticks import TicksMixin
from conveyor.server.store.versions import ROUTE_ORDER, VersionsMixin
from conveyor.server.store.workspace_secrets import SecretsMixin

__all__ = ["Dialect", "Driver", "Migration", "Row", "SqlStore", "Tx", "load_migrations"]


class SqlStore(
    AttemptsMixin, FinishMixin, SweepMixin, QueriesMixin, OutboxMixin, ServerKeysMixin, AgentsMixin,
    SessionsMixin, TenantsMixin, HistoryMixin, LogsMixin, SecretsMixin, VersionsMixin,
    RetentionMixin, TicksMixin,
):
    """``conveyor.server.store.base.Store`` over a :class:`Driver`."""

    def __init__(self, driver: Driver, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        self._stats = StatsCache()
        self.driver = driver
        self.max_output_bytes = max_output_bytes
        d = driver.dialect
        self._skip_locked = d.skip_locked
        self._for_update = d.for_update
        self._enqueuer = Enqueuer(driver)
        self.routes = RouteCache()

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        await self.driver.open(load_migrations(self.driver.dialect.name))

    async def close(self) -> None:
        await self.driver.close()

    async def ping(self) -> None:
        await self.driver.read(lambda tx: tx.execute("SELECT 1"))

    async def schema_version(self) -> int:
        rows = await self.driver.read(
            lambda tx: tx.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version")
        )
        return int(rows[0][0])

    # -- stubs, deployments, code objects ----------------------------------------------------
    async def _store_object(self, tx: Tx, workspace_id: str, code: bytes, t: int) -> int:
        digest = hashlib.sha256(code).hexdigest()
        await tx.execute(
            "INSERT INTO objects (workspace_id, sha256, data, created_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (workspace_id, sha256) DO NOTHING",
            [workspace_id, digest, code, t],
        )
        rows = await tx.execute(
            "SELECT id FROM objects WHERE workspace_id = ? AND sha256 = ?", [workspace_id, digest]
        )
        return int(rows[0][0])

    async def _insert_stub(
        self, tx: Tx, workspace_id: str, name: str, type_: StubType, config: str, code: bytes
    ) -> Stub:
        t = now_us(None)
        if not await tx.execute("SELECT 1 FROM workspaces WHERE id = ?", [workspace_id]):
            raise NotFound(f"workspace {workspace_id} not found")
        await _check_kind(tx, workspace_id, name, type_)
        object_id = await self._store_object(tx, workspace_id, code, t)
        # A concurrent deploy may take the same version first (PostgreSQL): take the next one.
        for _ in range(20):
            rows = await tx.execute(
                f"INSERT INTO stubs ({STUB_COLS})"
                " SELECT ?, ?, ?, ?, COALESCE(MAX(version), 0) + 1, ?, 1, ?, ?, ?, ?"
                " FROM stubs WHERE workspace_id = ? AND name = ?"
                " ON CONFLICT (workspace_id, name, version) DO NOTHING"
                f" RETURNING {STUB_COLS}",
                [
                    str(uuid.uuid4()),
                    workspace_id,
                    name,
                    type_,
                    config,
                    object_id,
                    t,
                    t,
                    True,
                    workspace_id,
                    name,
                ],
            )
            if rows:
                return to_stub(rows[0])
        raise StoreError(f"could not allocate a version for queue {name!r}")

    async def deploy_stub(
        self, workspace_id: str, name: str, config: Mapping[str, Any], code: bytes
    ) -> Stub:
        text = config_text(config)
        type_ = stub_type(config, deployed=True)
        return await self.driver.write(
            lambda tx: self._insert_stub(tx, workspace_id, name, type_, text, code)
        )

    async def upsert_serve_stub(
        self, workspace_id: str, name: str, config: Mapping[str, Any], code: bytes
    ) -> Stub:
        text = config_text(config)
        type_ = stub_type(config, deployed=False)

        async def op(tx: Tx) -> Stub:
            rows = await tx.execute(
                f"SELECT {STUB_COLS} FROM stubs"
                " WHERE workspace_id = ? AND name = ? AND type = ?"
                f" ORDER BY version DESC LIMIT 1{self._for_update}",
                [workspace_id, name, type_],
            )
            if not rows:
                return await self._insert_stub(tx, workspace_id, name, type_, text, code)
            stub = to_stub(rows[0])
            t = now_us(None)
            object_id = await self._store_object(tx, workspace_id, code, t)
            if stub.config == text and stub.object_id == object_id and stub.active:
                return stub
            bump = 1 if stub.config != text else 0
            # Serving a target again starts its version if it was stopped.
            updated = await tx.execute(
                "UPDATE stubs SET config = ?, object_id = ?, config_version = config_version + ?,"
                f" updated_at = ?, active = ? WHERE id = ? RETURNING {STUB_COLS}",
                [text, object_id, bump, t, True, stub.id],
            )
            if not stub.active:
                tx.emit(Event("stub", stub.id))
            return to_stub(updated[0])

        return await self.driver.write(op)

    async def get_stub(self, stub_id: str) -> Stub | None:
        key = canonical_id(stub_id)
        if key is None:
            return None
        rows = await self.driver.read(
            lambda tx: tx.execute(f"SELECT {STUB_COLS} FROM stubs WHERE id = ?", [key]), quick=True
        )
        return to_stub(rows[0]) if rows else None

    async def resolve_stub(
        self, workspace_id: str, name: str, version: int | None = None, *, cached: bool = False
    ) -> Stub | None:
        if cached and version is None:
            kept = self.routes.get(workspace_id, name)
            if kept is None:
                kept = await self.resolve_stub(workspace_id, name)
                if kept is not None:
                    self.routes.keep(kept)
            return kept
        sql = f"SELECT {STUB_COLS} FROM stubs WHERE workspace_id = ? AND name = ?"
        params: list[Any] = [workspace_id, name]
        if version is None:
            sql += ROUTE_ORDER
        else:
            sql += " AND version = ?"
            params.append(version)
        rows = await self.driver.read(lambda tx: tx.execute(sql, params), quick=True)
        return to_stub(rows[0]) if rows else None

    async def list_stubs(
        self, workspace_id: str | None = None, types: Sequence[StubType] | None = None
    ) -> list[Stub]:
        sql = f"SELECT {STUB_COLS} FROM stubs WHERE 1 = 1"
        params: list[Any] = []
        if workspace_id is not None:
            sql += " AND workspace_id = ?"
            params.append(workspace_id)
        if types is not None:
            if not types:
                return []
            sql += f" AND type IN {placeholders(len(types))}"
            params.extend(types)
        sql += " ORDER BY created_at, name, version"
        rows = await self.driver.read(lambda tx: tx.execute(sql, params))
        return [to_stub(row) for row in rows]

    async def get_object(self, object_id: int) -> bytes:
        rows = await self.driver.read(
            lambda tx: tx.execute("SELECT data FROM objects WHERE id = ?", [object_id])
        )
        if not rows:
            raise NotFound(f"code object {object_id} not found")
        return bytes(rows[0][0])

    # -- tasks: enqueue ----------------------------------------------------------------------
    async def enqueue(
        self, stub: Stub, tasks: Sequence[NewTask], max_pending: int, now: float | None = None
    ) -> list[str]:
        if not tasks:
            return []
        latest = self.routes.holds(stub)
        try:
            return await self._enqueuer.enqueue(stub, tasks, max_pending, now_us(now), latest)
        except (StaleRoute, NotFound):
            self.routes.forget(stub)
            raise

    # -- containers --------------------------------------------------------------------------
    async def register_container(
        self, container_id: str, stub_id: str, agent_id: str, now: float | None = None
    ) -> None:
        t = now_us(now)
        await self.driver.write(
            lambda tx: tx.execute(
                "INSERT INTO containers (id, stub_id, agent_id, started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                " SET heartbeat_at = excluded.heartbeat_at",
                [container_id, stub_id, agent_id, t, t],
            )
        )

    async def deregister_container(self, container_id: str) -> None:
        await self.driver.write(
            lambda tx: tx.execute("DELETE FROM containers WHERE id = ?", [container_id])
        )

    async def active_containers(self, stub_id: str, now: float | None = None) -> int:
        stale = now_us(now) - clock.to_us(CONTAINER_STALE_S)
        rows = await self.driver.read(
            lambda tx: tx.execute(
                "SELECT COUNT(*) FROM containers WHERE stub_id = ? AND heartbeat_at >= ?",
                [stub_id, stale],
            )
        )
        return int(rows[0][0])

    # -- notifications -----------------------------------------------------------------------
    async def request_warmup(self, stub_id: str) -> None:
        async def op(tx: Tx) -> None:
            tx.emit(Event("warmup", stub_id))

        await self.driver.write(op)

    def subscribe(self) -> Subscription:
        return self.driver.subscribe()


async def _check_kind(tx: Tx, workspace_id: str, name: str, type_: StubType) -> None:
    """A name is a task queue's or a schedule's, never both: versions of both kinds under
    one name would send the queue's route to a schedule (or the reverse)."""
    rows = await tx.execute(
        "SELECT type FROM stubs WHERE workspace_id = ? AND name = ? LIMIT 1", [workspace_id, name]
    )
    kind = type_.partition("/")[0]
    if rows and rows[0][0].partition("/")[0] != kind:
        held = "a schedule" if kind == "taskqueue" else "a task queue"
        raise ConfigError(f"{name!r} is {held} already: give this one another name")
