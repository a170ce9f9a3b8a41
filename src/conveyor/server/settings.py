"""The settings of each server process: one frozen object per kind, made of the parts' own.

``serve`` (gateway + agent + callback sender), ``server`` (gateway + callback sender) and
``worker`` (agent) each take one of these; the command line fills it in one place,
``conveyor.cli.options``. :func:`settings_lines` shows one, secrets masked (``-v``).

The parts are imported for type checking only: the command line imports this module for its
defaults, and its client commands start faster without the gateway and agent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from conveyor.server.agent.settings import AgentSettings
    from conveyor.server.callbacks import CallbackSettings
    from conveyor.server.gateway.settings import GatewaySettings

DEFAULT_STORE = "sqlite:///.conveyor/conveyor.db"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
#: Finished tasks are kept this long (``--retention``); 0 keeps them forever.
DEFAULT_RETENTION_S = 7 * 86400.0
#: Fields whose value is never shown.
SECRETS = frozenset({"token"})


@dataclass(frozen=True, slots=True)
class ServeSettings:
    #: Task queues as ``FILE:FUNC``, registered as this process's own versions.
    targets: tuple[str, ...]
    store: str
    host: str
    port: int
    #: The default workspace's token; None keeps the one beside the store (or makes one).
    token: str | None
    gateway: GatewaySettings
    agent: AgentSettings
    callbacks: CallbackSettings
    #: Seconds finished tasks are kept (DESIGN A11); 0: forever.
    retention_s: float = DEFAULT_RETENTION_S


@dataclass(frozen=True, slots=True)
class ServerSettings:
    store: str
    host: str
    port: int
    gateway: GatewaySettings
    callbacks: CallbackSettings
    retention_s: float = DEFAULT_RETENTION_S


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    store: str
    agent: AgentSettings
    retention_s: float = DEFAULT_RETENTION_S


def sqlite_folder(store_url: str) -> Path:
    """The folder that holds an SQLite store (its token file and code cache live beside it)."""
    if store_url.startswith("sqlite:///"):
        return Path(store_url.removeprefix("sqlite:///")).parent
    return Path(".conveyor")


def shown_store(url: str) -> str:
    """``url`` for messages: any password in it masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user_info, _, place = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{place}").geturl()


def settings_lines(settings: Any, prefix: str = "") -> Iterator[str]:
    """``name = value``, one line per field, nested parts as ``part.name``; secrets are
    ``***`` and passwords in URLs masked."""
    for field in fields(settings):
        value = getattr(settings, field.name)
        name = prefix + field.name
        if is_dataclass(value):
            yield from settings_lines(value, name + ".")
        else:
            shown = "***" if field.name in SECRETS and value is not None else _text(value)
            yield f"{name} = {shown}"


def _text(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple | frozenset):
        items = sorted(value) if isinstance(value, frozenset) else value
        return ", ".join(str(item) for item in items) or "none"
    return shown_store(str(value))  # any URL, not only the store's, may carry a password
