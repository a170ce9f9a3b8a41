"""Shared test helpers: a real PostgreSQL for any test folder that needs one.

``pg_url`` gives each test a fresh, migrated database copied from a template made once per
session. Without a reachable server the test is skipped locally and fails when ``CI=true``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from conveyor.server.store import open_store
from conveyor.server.store.base import Store

OpenStore = Callable[[], Awaitable[Store]]

#: Any database of the server, used to create and drop the test databases.
PG_ADMIN_URL = os.environ.get("CONVEYOR_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def pg_url_for(database: str) -> str:
    """``PG_ADMIN_URL`` pointing at another database."""
    return urlunsplit(urlsplit(PG_ADMIN_URL)._replace(path=f"/{database}"))


@functools.cache
def pg_available() -> bool:
    try:
        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def require_pg() -> None:
    """Skip the calling test without PostgreSQL, or fail it in CI."""
    if pg_available():
        return
    message = f"PostgreSQL is not reachable at {PG_ADMIN_URL}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql)


def _migrate(url: str) -> None:
    from conveyor.server.store import open_store

    async def run() -> None:
        store = open_store(url)
        await store.open()
        await store.close()

    # Its own thread, so it never meets a running event loop.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def uv_cache() -> Path:
    """The uv cache every image build of the suite uses: each spec's wheels are downloaded
    once per session (and kept between runs on one machine; git-ignored)."""
    folder = Path(__file__).resolve().parent.parent / ".pytest-uv-cache"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """Name of a database holding the current schema, made once per session."""
    require_pg()
    name = f"conveyor_tpl_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        _migrate(pg_url_for(name))
        yield name
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_empty_url() -> Iterator[str]:
    """URL of a fresh, empty database (no schema), dropped after the test."""
    require_pg()
    name = f"conveyor_t_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name}")
    try:
        yield pg_url_for(name)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url(pg_template: str) -> Iterator[str]:
    """URL of a fresh database with the current schema, dropped after the test."""
    name = f"conveyor_t_{uuid.uuid4().hex[:12]}"
    _admin(f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    try:
        yield pg_url_for(name)
    finally:
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/conveyor.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
async def open_more(store_url: str) -> AsyncIterator[OpenStore]:
    """Opens further store objects on the same database (closed after the test)."""
    opened: list[Store] = []

    async def make() -> Store:
        store = open_store(store_url)
        await store.open()
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_more: OpenStore) -> Store:
    return await open_more()
