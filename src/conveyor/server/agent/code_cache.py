"""Where a stub's code lives on this machine: its serve folder, or its bundle unpacked once."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from conveyor.errors import ConfigError
from conveyor.queue_config import QueueConfig
from conveyor.server.store.base import Store
from conveyor.server.store.records import Stub


async def code_root(store: Store, stub: Stub, config: QueueConfig, cache: Path) -> Path:
    if config.code_path is not None:
        return Path(config.code_path)
    target = cache / stub.id
    if target.is_dir():
        return target
    data = await store.get_object(stub.object_id)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{stub.id}-", dir=cache))
    try:
        unpack(data, staging)
        os.replace(staging, target)  # atomic: a half-unpacked bundle is never used
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():
            raise
    return target


def unpack(bundle: bytes, dest: Path) -> None:
    """Unzip a code bundle, refusing members that would land outside ``dest``."""
    root = dest.resolve()
    try:
        with zipfile.ZipFile(io.BytesIO(bundle)) as archive:
            for member in archive.infolist():
                path = (root / member.filename).resolve()
                if not path.is_relative_to(root):
                    raise ConfigError(f"code bundle member escapes its folder: {member.filename}")
            archive.extractall(root)
    except zipfile.BadZipFile as exc:
        raise ConfigError(f"code bundle is not a zip file: {exc}") from None
