"""A task queue's configuration: the decorator parameters of DESIGN A3, validated.

It travels as the stub's ``config`` JSON, so the gateway, the store and the agents read the
same values the decorator was given.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from conveyor.errors import ConfigError

MAX_RETRIES_LIMIT = 5
TTL_MIN, TTL_MAX = 1, 86400

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T|KB|MB|GB|TB)?\s*$", re.I)
_MEMORY_MIB = {
    None: 1.0,
    "ki": 1 / 1024,
    "mi": 1.0,
    "gi": 1024.0,
    "ti": 1024.0 * 1024,
    "k": 1000 / 1024**2,
    "kb": 1000 / 1024**2,
    "m": 1e6 / 1024**2,
    "mb": 1e6 / 1024**2,
    "g": 1e9 / 1024**2,
    "gb": 1e9 / 1024**2,
    "t": 1e12 / 1024**2,
    "tb": 1e12 / 1024**2,
}


def parse_memory(value: int | float | str) -> int:
    """Memory in MiB from an int (MiB) or a string such as ``"512Mi"``, ``"1Gi"``, ``"256"``."""
    if isinstance(value, bool):
        raise ConfigError(f"memory must be MiB or a string like '1Gi', got {value!r}")
    if isinstance(value, int | float):
        mib = float(value)
    else:
        match = _MEMORY.match(str(value))
        if not match:
            raise ConfigError(
                f"memory {value!r} is not understood; use MiB (128) or a string like '512Mi', '1Gi'"
            )
        unit = match.group(2).lower() if match.group(2) else None
        mib = float(match.group(1)) * _MEMORY_MIB[unit]
    if mib < 1:
        raise ConfigError(f"memory must be at least 1 MiB, got {value!r}")
    return round(mib)


@dataclass(frozen=True, slots=True)
class AutoscalerConfig:
    min_containers: int = 0
    max_containers: int = 1
    tasks_per_container: int = 1

    def __post_init__(self) -> None:
        _int_at_least("min_containers", self.min_containers, 0)
        _int_at_least("max_containers", self.max_containers, 1)
        _int_at_least("tasks_per_container", self.tasks_per_container, 1)
        if self.min_containers > self.max_containers:
            raise ConfigError(
                f"min_containers ({self.min_containers}) must not exceed "
                f"max_containers ({self.max_containers})"
            )


@dataclass(frozen=True, slots=True)
class QueueConfig:
    name: str
    #: ``"relative/path.py:function"`` inside the code root.
    handler: str
    timeout: float = 3600
    max_retries: int = 3
    #: Qualified names (``module.Class``) of retryable exception classes.
    retry_for: tuple[str, ...] = ()
    retry_backoff: float = 0
    ttl: int = 7200
    max_pending_tasks: int = 100
    workers: int = 1
    keep_warm_seconds: float = 10
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    callback_url: str | None = None
    authorized: bool = True
    cpu: float = 1.0
    #: MiB.
    memory: int = 128
    env: Mapping[str, str] = field(default_factory=dict)
    #: For ``serve``: the absolute folder the handler's file lives in (no code upload).
    code_path: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(
            r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", self.name
        ):
            raise ConfigError(
                f"queue name {self.name!r} must be 1-100 letters, digits, '_', '-' or '.'"
            )
        if self.name in {"id", "public"}:
            raise ConfigError(f"queue name {self.name!r} is reserved")
        _number("timeout", self.timeout)
        if self.timeout != -1 and self.timeout <= 0:
            raise ConfigError(
                f"timeout must be a positive number of seconds or -1, got {self.timeout!r}"
            )
        _int_at_least("max_retries", self.max_retries, 0)
        if self.max_retries > MAX_RETRIES_LIMIT:
            raise ConfigError(
                f"max_retries must be at most {MAX_RETRIES_LIMIT}, got {self.max_retries}"
            )
        _number("retry_backoff", self.retry_backoff)
        if self.retry_backoff < 0:
            raise ConfigError(f"retry_backoff must be >= 0 seconds, got {self.retry_backoff!r}")
        _int_at_least("ttl", self.ttl, TTL_MIN)
        if self.ttl > TTL_MAX:
            raise ConfigError(
                f"ttl must be between {TTL_MIN} and {TTL_MAX} seconds, got {self.ttl}"
            )
        _int_at_least("max_pending_tasks", self.max_pending_tasks, 1)
        _int_at_least("workers", self.workers, 1)
        _number("keep_warm_seconds", self.keep_warm_seconds)
        if self.keep_warm_seconds < 0:
            raise ConfigError(f"keep_warm_seconds must be >= 0, got {self.keep_warm_seconds!r}")
        _number("cpu", self.cpu)
        if self.cpu <= 0:
            raise ConfigError(f"cpu must be > 0, got {self.cpu!r}")
        _int_at_least("memory", self.memory, 1)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.env.items()):
            raise ConfigError("env must map strings to strings")
        if self.callback_url is not None and not str(self.callback_url).startswith(
            ("http://", "https://")
        ):
            raise ConfigError(f"callback_url must be an http(s) URL, got {self.callback_url!r}")

    def to_json(self) -> str:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS).decode()

    def to_dict(self) -> dict[str, Any]:
        value = orjson.loads(self.to_json())
        assert isinstance(value, dict)
        return value

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown queue config keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        try:
            if isinstance(values.get("autoscaler"), Mapping):
                values["autoscaler"] = AutoscalerConfig(**values["autoscaler"])
            if "retry_for" in values:
                values["retry_for"] = tuple(values["retry_for"])
            if "memory" in values:
                values["memory"] = parse_memory(values["memory"])
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid queue config: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> QueueConfig:
        return cls.from_dict(_json_object(text))

    @classmethod
    def stored(cls, name: str, text: str) -> QueueConfig:
        """The config a stub row named ``name`` holds.

        A deployment stores every key, but the store takes any mapping, so a row may lack
        ``name`` (then it is the stub's) and ``handler`` (then ``""``: the store never runs it).
        """
        return cls.from_dict({"name": name, "handler": "", **_json_object(text)})


def _json_object(text: str | bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"queue config is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("queue config must be a JSON object")
    return data


def _number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {value!r}")


def _int_at_least(name: str, value: object, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
