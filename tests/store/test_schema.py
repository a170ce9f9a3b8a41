"""Store URLs, migrations and the schema they produce."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import psycopg
import pytest

from conveyor.errors import ConfigError
from conveyor.server.store import open_store, sqlite_path
from conveyor.server.store.sql import load_migrations

EXPECTED = Path(__file__).parent / "schema"
#: Set to rewrite the checked-in schema dumps after adding a migration (then review the diff).
UPDATE = os.environ.get("CONVEYOR_UPDATE_SCHEMA") == "1"


def test_store_urls() -> None:
    assert sqlite_path("sqlite:///relative/c.db") == "relative/c.db"
    assert sqlite_path("sqlite:////abs/c.db") == "/abs/c.db"
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:", "sqlite://host/x.db"):
        with pytest.raises(ConfigError):
            open_store(bad)
    with pytest.raises(ConfigError, match="unsupported store URL scheme 'mysql'"):
        open_store("mysql://localhost/db")
    assert open_store("postgres://u@h:1/d") is not None


async def test_sqlite_creates_parent_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///.conveyor/deep/c.db")
    await store.open()
    await store.ping()
    await store.close()
    assert (tmp_path / ".conveyor/deep/c.db").is_file()


def dump_sqlite(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name"
        ).fetchall()
    return "\n".join(f"{kind} {name}: {' '.join(sql.split())}" for kind, name, sql in rows) + "\n"


def dump_postgres(url: str) -> str:
    with psycopg.connect(url) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type, is_nullable, column_default"
            " FROM information_schema.columns WHERE table_schema = 'public'"
            " ORDER BY table_name, column_name"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname"
        ).fetchall()
        checks = conn.execute(
            "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()
    lines = [f"column {' '.join(str(v) for v in row)}" for row in columns]
    lines += [f"index {row[0]}" for row in indexes]
    lines += [f"constraint {row[0]}: {row[1]}" for row in checks]
    return "\n".join(lines) + "\n"


def check(name: str, dump: str) -> None:
    path = EXPECTED / name
    if UPDATE:
        path.write_text(dump)
    assert dump == path.read_text(), f"schema differs from {path}; see CONVEYOR_UPDATE_SCHEMA"


async def test_sqlite_migrations_from_empty_give_the_expected_schema(tmp_path: Path) -> None:
    stores = [open_store(f"sqlite:///{tmp_path}/c.db") for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))  # concurrent openers apply each once
    assert {await s.schema_version() for s in stores} == {load_migrations("sqlite")[-1].version}
    for s in stores:
        await s.close()
    with sqlite3.connect(tmp_path / "c.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == len(
            load_migrations("sqlite"))
    check("sqlite.txt", dump_sqlite(tmp_path / "c.db"))


async def test_postgres_migrations_from_empty_give_the_expected_schema(pg_empty_url: str) -> None:
    stores = [open_store(pg_empty_url) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    assert {await s.schema_version() for s in stores} == {load_migrations("postgres")[-1].version}
    for s in stores:
        await s.close()
    with psycopg.connect(pg_empty_url) as conn:
        row = conn.execute("SELECT COUNT(*) FROM schema_version").fetchone()
        assert row is not None and row[0] == len(load_migrations("postgres"))
    check("postgres.txt", dump_postgres(pg_empty_url))


def test_both_backends_have_the_same_migrations() -> None:
    sqlite, postgres = load_migrations("sqlite"), load_migrations("postgres")
    assert [(m.version, m.name) for m in sqlite] == [(m.version, m.name) for m in postgres]
    # 1, 2, 3, … without a gap: the runner skips a number below the highest applied one.
    assert [m.version for m in sqlite] == list(range(1, len(sqlite) + 1))
