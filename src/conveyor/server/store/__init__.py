"""The store: all of conveyor's state, in SQLite (one machine) or PostgreSQL (many).

``open_store(url)`` picks the backend from the URL; call ``await store.open()`` before use.
"""

from __future__ import annotations

from conveyor.errors import ConfigError
from conveyor.server.store.base import DEFAULT_MAX_OUTPUT_BYTES, Store
from conveyor.server.store.sql import SqlStore

__all__ = ["SqlStore", "Store", "open_store", "sqlite_path"]

_SQLITE_PREFIX = "sqlite:///"
_POSTGRES_PREFIXES = ("postgresql://", "postgres://")


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` URL."""
    path = url[len(_SQLITE_PREFIX):].split("?", 1)[0]
    if not url.startswith(_SQLITE_PREFIX) or not path or path.endswith("/"):
        raise ConfigError(
            f"invalid SQLite store URL {url!r}; use sqlite:///relative/path.db "
            "or sqlite:////absolute/path.db"
        )
    if path == ":memory:":
        raise ConfigError("an in-memory SQLite store cannot be shared; give a file path")
    return path


def open_store(url: str, *, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES) -> Store:
    """A store for ``url`` (not yet opened: call ``await store.open()``)."""
    if url.startswith("sqlite:"):
        from conveyor.server.store.sqlite import SqliteDriver

        return SqlStore(SqliteDriver(sqlite_path(url)), max_output_bytes=max_output_bytes)
    if url.startswith(_POSTGRES_PREFIXES):
        from conveyor.server.store.postgres import PostgresDriver

        return SqlStore(PostgresDriver(url), max_output_bytes=max_output_bytes)
    scheme = url.split(":", 1)[0] if ":" in url else url
    raise ConfigError(
        f"unsupported store URL scheme {scheme!r} in {url!r}; use sqlite:///path/to/file.db "
        "or postgresql://user@host:port/database"
    )
