"""Find the task queues named on the command line (``FILE:FUNC``)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from conveyor.errors import ConfigError
from conveyor.queue_config import QueueConfig
from conveyor.sdk import TaskQueue


@dataclass(frozen=True)
class Target:
    path: Path
    attr: str
    queue: TaskQueue[..., object]

    def config(self, code_path: str | None) -> QueueConfig:
        return self.queue.config(handler=f"{self.path.name}:{self.attr}", code_path=code_path)


def load_target(spec: str) -> Target:
    """Import ``path/to/file.py:function`` and return its decorated task queue."""
    file_part, sep, attr = spec.rpartition(":")
    if not sep or not file_part or not attr:
        raise ConfigError(f"{spec!r} is not FILE:FUNC, e.g. app.py:resize")
    path = Path(file_part).resolve()
    if not path.is_file():
        raise ConfigError(f"no such file: {file_part}")
    module_name = "conveyor_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"cannot import {file_part}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module
    sys.path.insert(0, str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"importing {file_part} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.parent))
    queue = getattr(module, attr, None)
    if queue is None:
        raise ConfigError(f"{file_part} has no attribute {attr!r}")
    if not isinstance(queue, TaskQueue):
        raise ConfigError(f"{spec} is not decorated with @task_queue")
    return Target(path, attr, queue)
