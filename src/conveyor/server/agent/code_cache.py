"""Where a stub's code lives on this machine: its serve folder, or its bundle unpacked once."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path

from conveyor.queue_config import QueueConfig
from conveyor.server.bundles import unpack
from conveyor.server.store.base import Store
from conveyor.server.store.records import SERVED, Stub


async def code_root(store: Store, stub: Stub, config: QueueConfig, cache: Path) -> Path:
    if config.code_path is not None and stub.type in SERVED:
        return Path(config.code_path)
    # A deployment's code is its bundle, always: a code_path in its row (one stored before
    # deploy refused it) must not make this agent run code from a folder of its machine.
    target = cache / stub.id
    if target.is_dir():
        return target
    data = await store.get_object(stub.object_id)
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{stub.id}-", dir=cache))
    try:
        await asyncio.to_thread(unpack, data, staging)  # up to 512 MiB: not on the loop
        os.replace(staging, target)  # atomic: a half-unpacked bundle is never used
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        if not target.is_dir():
            raise
    return target
