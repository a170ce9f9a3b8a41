"""Where the gateway is and the token to reach it: flags, then environment, then config file.

The one place both ``Client.from_env`` and the command line decide it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.errors import NotConfigured

ENV_URL = "CONVEYOR_URL"
ENV_TOKEN = "CONVEYOR_TOKEN"
#: A store URL: ``Client.from_env`` (and so ``square.put``) then enqueues through the store.
ENV_STORE = "CONVEYOR_STORE"
#: The gateway when none is configured: where ``conveyor serve`` listens by default.
DEFAULT_URL = "http://127.0.0.1:8000"


def config_path() -> Path:
    return Path.home() / ".conveyor" / "config.toml"


def load_store(environ: Mapping[str, str] | None = None) -> str | None:
    """The store URL of ``CONVEYOR_STORE``, or None (enqueue over HTTP)."""
    environ = os.environ if environ is None else environ
    return environ.get(ENV_STORE) or None


def load_settings(
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
) -> tuple[str, str]:
    """``(url, token)``: each the one given (a ``conveyor`` flag), else CONVEYOR_URL /
    CONVEYOR_TOKEN, else ``~/.conveyor/config.toml`` (``url = "…"``, ``token = "…"``), else
    ``DEFAULT_URL``, key by key. No token anywhere is ``NotConfigured``. The one place both
    ``Client.from_env`` and the command line decide where the gateway is."""
    environ = os.environ if environ is None else environ
    path = config_path() if path is None else path
    file_values: dict[str, Any] = {}
    if path.is_file():
        try:
            file_values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise NotConfigured(f"cannot read {path}: {exc}") from None
    url = url or environ.get(ENV_URL) or file_values.get("url") or DEFAULT_URL
    token = token or environ.get(ENV_TOKEN) or file_values.get("token")
    if not isinstance(url, str):
        raise NotConfigured(f"url in {path} must be a string")
    if not isinstance(token, str) or not token:
        raise NotConfigured(
            f'no token: set {ENV_TOKEN} (or pass --token to the conveyor command) or put '
            f'token = "…" in {path}'
        )
    return url, token
