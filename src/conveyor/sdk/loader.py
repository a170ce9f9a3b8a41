"""Find the task queues and schedules named on the command line (``FILE:FUNC``)."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from conveyor.errors import ConfigError
from conveyor.queue_config import QueueConfig
from conveyor.sdk.decorator import TaskQueue

#: What an example request body holds for a parameter of each annotated type.
PLACEHOLDERS: Mapping[str, Any] = {
    "int": 0, "float": 0.0, "str": "", "bool": False, "list": [], "tuple": [], "dict": {},
}
#: Filled by conveyor, never in a request body.
_FILLED = frozenset({"context", "callback_url"})


@dataclass(frozen=True)
class Target:
    path: Path
    attr: str
    queue: TaskQueue[..., object]

    def config(self, code_path: str | None) -> QueueConfig:
        return self.queue.config(handler=f"{self.path.name}:{self.attr}", code_path=code_path)

    def example_body(self) -> dict[str, Any]:
        """A request body for the handler: each keyword parameter with its default when that
        is a JSON scalar, else a placeholder of its annotated type (``null`` if none)."""
        try:
            params = inspect.signature(self.queue.func).parameters.values()
        except (TypeError, ValueError):  # some callables have no signature
            return {}
        body: dict[str, Any] = {}
        for param in params:
            if param.name in _FILLED or param.kind not in (param.POSITIONAL_OR_KEYWORD,
                                                           param.KEYWORD_ONLY):
                continue
            if isinstance(param.default, str | int | float | bool):
                body[param.name] = param.default
            else:
                body[param.name] = PLACEHOLDERS.get(_type_name(param.annotation))
        return body


def _type_name(annotation: Any) -> str:
    """``"int"`` for ``int`` and for ``"int"`` (postponed annotations); ``"list"`` for
    ``list[str]``."""
    if isinstance(annotation, str):
        return annotation.split("[", 1)[0].strip()
    return str(getattr(typing.get_origin(annotation) or annotation, "__name__", ""))


def load_target(spec: str) -> Target:
    """Import ``path/to/file.py:function`` and return its decorated task queue (or
    schedule)."""
    file_part, sep, attr = spec.rpartition(":")
    if not sep or not file_part or not attr:
        raise ConfigError(f"{spec!r} is not FILE:FUNC, e.g. app.py:resize")
    path = Path(file_part).resolve()
    if not path.is_file():
        raise ConfigError(
            f"no such file: {path}; give FILE:FUNC of a Python file, e.g. app.py:resize"
        )
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
        raise ConfigError(f"{file_part} has no {attr!r}; {_choices(module, file_part)}")
    if not isinstance(queue, TaskQueue):
        raise ConfigError(
            f"{spec} is not decorated with @task_queue or @schedule; "
            f"{_choices(module, file_part)}"
        )
    return Target(path, attr, queue)


def _choices(module: ModuleType, file_part: str) -> str:
    names = [name for name, value in vars(module).items() if isinstance(value, TaskQueue)]
    if not names:
        return f"{file_part} has no function decorated with @task_queue or @schedule"
    return "its task queues and schedules: " + ", ".join(
        f"{file_part}:{name}" for name in names
    )
