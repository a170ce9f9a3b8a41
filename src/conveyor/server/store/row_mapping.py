"""Stored rows and their records: column lists, row mappers and the stored form of values.

The column lists give the order the mappers read a row in, so a statement that feeds a mapper
selects through them. Times are stored as integer microseconds, ids in canonical UUID form,
configs as JSON with sorted keys.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from conveyor import clock
from conveyor.server.store.guards import sql_list
from conveyor.server.store.records import Stub, TaskRecord, Workspace
from conveyor.tasks import WAITING, TaskStatus

_TASK_COLUMNS = (
    "id", "workspace_id", "stub_id", "status", "payload", "callback_url", "attempt", "fence",
    "max_retries", "timeout_s", "ttl_s", "retry_backoff_s", "container_id", "created_at",
    "started_at", "ended_at", "updated_at", "result", "error", "run_at", "replay_of",
)  # fmt: skip
_STUB_COLUMNS = (
    "id", "workspace_id", "name", "type", "version", "config", "config_version", "object_id",
    "created_at", "updated_at", "active",
)  # fmt: skip


def _columns(names: Sequence[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + name for name in names)


TASK_COLS = _columns(_TASK_COLUMNS)
STUB_COLS = _columns(_STUB_COLUMNS)
WORKSPACE_COLS = "id, name, signing_secret, created_at"
#: Task and stub columns of ``tasks t JOIN stubs s``; a joined row splits at ``TASK_WIDTH``.
T_COLS = _columns(_TASK_COLUMNS, "t")
S_COLS = _columns(_STUB_COLUMNS, "s")
TASK_WIDTH, STUB_WIDTH = len(_TASK_COLUMNS), len(_STUB_COLUMNS)
WAITING_SQL = sql_list(WAITING)


def now_us(now: float | None) -> int:
    return clock.to_us(clock.now() if now is None else now)


def canonical_id(text: str) -> str | None:
    """The stored form of a task/stub/output id, or None when ``text`` is not a UUID."""
    try:
        return str(uuid.UUID(str(text)))
    except ValueError:
        return None


def placeholders(n: int) -> str:
    return "(" + ",".join("?" * n) + ")"


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, number = text.partition(":")
        # ASCII digits that fit a signed 64-bit column: a larger number would reach the SQL
        # driver and fail there (OverflowError, out of range) instead of being a bad cursor.
        if prefix != "seq" or not (number.isascii() and number.isdigit()) or len(number) > 19:
            raise ValueError
        seq = int(number)
        if seq >= 2**63:
            raise ValueError
        return seq
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValueError(f"malformed cursor {cursor!r}") from None


def to_task(row: Sequence[Any]) -> TaskRecord:
    return TaskRecord(
        id=row[0],
        workspace_id=row[1],
        stub_id=row[2],
        status=TaskStatus(row[3]),
        payload=row[4],
        callback_url=row[5],
        attempt=int(row[6]),
        fence=int(row[7]),
        max_retries=int(row[8]),
        timeout_s=float(row[9]),
        ttl_s=float(row[10]),
        retry_backoff_s=float(row[11]),
        container_id=row[12],
        created_at=int(row[13]),
        started_at=row[14],
        ended_at=row[15],
        updated_at=int(row[16]),
        result=row[17],
        error=row[18],
        run_at=row[19],
        replay_of=row[20],
    )


def to_stub(row: Sequence[Any]) -> Stub:
    return Stub(
        id=row[0],
        workspace_id=row[1],
        name=row[2],
        type=row[3],
        version=int(row[4]),
        config=row[5],
        config_version=int(row[6]),
        object_id=int(row[7]),
        created_at=int(row[8]),
        updated_at=int(row[9]),
        active=bool(row[10]),
    )


def to_workspace(row: Sequence[Any]) -> Workspace:
    return Workspace(id=row[0], name=row[1], signing_secret=row[2], created_at=int(row[3]))


def config_text(config: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(config), option=orjson.OPT_SORT_KEYS).decode()
