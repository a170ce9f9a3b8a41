"""A task queue's configuration: the decorator parameters of DESIGN A3, validated.

It travels as the stub's ``config`` JSON, so the gateway, the store and the agents read the
same values the decorator was given.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from conveyor.cron import Cron
from conveyor.errors import ConfigError
from conveyor.image import Image

MAX_RETRIES_LIMIT = 5
TTL_MIN, TTL_MAX = 1, 86400
#: The bounds of DESIGN A3's fields (docs/api.md shows them): a value outside is refused at
#: decoration and at deploy, with a message that starts with the field's name.
TIMEOUT_MAX_S = 7 * 86400
RETRY_BACKOFF_MAX_S = 86400
MAX_PENDING_LIMIT = 1_000_000
WORKERS_MAX = 64
KEEP_WARM_MAX_S = 7 * 86400
CONTAINERS_MAX = 1000
TASKS_PER_CONTAINER_MAX = 1_000_000
CPU_MAX = 256
MEMORY_MAX_MIB = 1024 * 1024
RETRY_FOR_MAX = 100
ENV_MAX = 256
ENV_VALUE_MAX = 32 * 1024
HANDLER_MAX = 1000
URL_MAX = 2048
#: Fields only the server sets (``serve`` puts its folder in ``code_path``): a deployment
#: that carries one is refused.
SERVER_ONLY_FIELDS = frozenset({"code_path"})

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: What a secret may be called (DESIGN A9): it becomes an environment variable of that name.
SECRET_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
SECRETS_MAX = 100

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
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ConfigError(f"memory must be MiB or a string like '1Gi', got {_show(value)}")
    if isinstance(value, int | float):
        mib = float(value) if math.isfinite(value) else math.inf
    else:
        match = _MEMORY.match(value) if len(value) <= 64 else None
        if not match:
            raise ConfigError(
                f"memory {_show(value)} is not understood; use MiB (128) or a string like "
                "'512Mi', '1Gi'"
            )
        unit = match.group(2).lower() if match.group(2) else None
        mib = float(match.group(1)) * _MEMORY_MIB[unit]
    if not 1 <= mib <= MEMORY_MAX_MIB:
        raise ConfigError(
            f"memory must be between 1 MiB and {MEMORY_MAX_MIB} MiB (1Ti), got {_show(value)}"
        )
    return round(mib)


@dataclass(frozen=True, slots=True)
class AutoscalerConfig:
    min_containers: int = 0
    max_containers: int = 1
    tasks_per_container: int = 1

    def __post_init__(self) -> None:
        _int_in("autoscaler.min_containers", self.min_containers, 0, CONTAINERS_MAX)
        _int_in("autoscaler.max_containers", self.max_containers, 1, CONTAINERS_MAX)
        _int_in(
            "autoscaler.tasks_per_container", self.tasks_per_container, 1, TASKS_PER_CONTAINER_MAX
        )
        if self.min_containers > self.max_containers:
            raise ConfigError(
                f"autoscaler.min_containers ({self.min_containers}) must not exceed "
                f"max_containers ({self.max_containers})"
            )

    @classmethod
    def from_value(cls, value: object) -> AutoscalerConfig:
        """An ``AutoscalerConfig`` as it is, or one from a JSON object of its fields."""
        if isinstance(value, AutoscalerConfig):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(
                f"autoscaler must be an object of min_containers, max_containers and "
                f"tasks_per_container, got {_show(value)}"
            )
        unknown = sorted(str(key) for key in set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"autoscaler has unknown keys: {', '.join(unknown)}")
        return cls(**value)


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
    #: The queue's own packages (DESIGN A9); None: the agent's own environment.
    image: Image | None = None
    #: Names of workspace secrets given to its processes as environment variables (A9).
    secrets: tuple[str, ...] = ()
    #: For ``serve``: the absolute folder the handler's file lives in (no code upload).
    #: Server-only: a deployment never sets it (``from_client``).
    code_path: str | None = None
    #: A schedule's cron expression (``@schedule``); None for a task queue.
    when: str | None = None
    #: The time zone ``when`` is read in (a schedule's; None means UTC).
    timezone: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(
            r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}", self.name
        ):
            raise ConfigError(
                f"queue name {_show(self.name)} must be 1-100 letters, digits, '_', '-' or '.'"
            )
        if self.name in {"id", "public"}:
            raise ConfigError(f"queue name {self.name!r} is reserved")
        if not isinstance(self.handler, str) or len(self.handler) > HANDLER_MAX:
            raise ConfigError(
                f"handler must be a string 'path/to/file.py:function', got {_show(self.handler)}"
            )
        _number("timeout", self.timeout)
        if self.timeout != -1 and not 0 < self.timeout <= TIMEOUT_MAX_S:
            raise ConfigError(
                f"timeout must be -1 or between 0 and {TIMEOUT_MAX_S} seconds, got {self.timeout!r}"
            )
        _int_in("max_retries", self.max_retries, 0, MAX_RETRIES_LIMIT)
        _retry_names(self.retry_for)
        _number_in("retry_backoff", self.retry_backoff, 0, RETRY_BACKOFF_MAX_S)
        _int_in("ttl", self.ttl, TTL_MIN, 2**63)
        if self.ttl > TTL_MAX:
            raise ConfigError(
                f"ttl must be between {TTL_MIN} and {TTL_MAX} seconds, got {self.ttl}"
            )
        _int_in("max_pending_tasks", self.max_pending_tasks, 1, MAX_PENDING_LIMIT)
        _int_in("workers", self.workers, 1, WORKERS_MAX)
        _number_in("keep_warm_seconds", self.keep_warm_seconds, 0, KEEP_WARM_MAX_S)
        if not isinstance(self.autoscaler, AutoscalerConfig):
            raise ConfigError(
                f"autoscaler must be a QueueDepthAutoscaler, got {_show(self.autoscaler)}"
            )
        if not isinstance(self.authorized, bool):
            raise ConfigError(f"authorized must be true or false, got {_show(self.authorized)}")
        _number("cpu", self.cpu)
        if not 0 < self.cpu <= CPU_MAX:
            raise ConfigError(f"cpu must be > 0 and at most {CPU_MAX}, got {self.cpu!r}")
        _int_in("memory", self.memory, 1, MEMORY_MAX_MIB)
        _env(self.env)
        if self.image is not None and not isinstance(self.image, Image):
            raise ConfigError(f"image must be an Image, got {_show(self.image)}")
        _secret_names(self.secrets)
        if self.callback_url is not None and not (
            isinstance(self.callback_url, str)
            and len(self.callback_url) <= URL_MAX
            and self.callback_url.startswith(("http://", "https://"))
        ):
            raise ConfigError(
                f"callback_url must be an http(s) URL of at most {URL_MAX} characters, "
                f"got {_show(self.callback_url)}"
            )
        if self.code_path is not None and not (
            isinstance(self.code_path, str) and self.code_path.startswith("/")
        ):
            raise ConfigError(f"code_path must be an absolute folder, got {_show(self.code_path)}")
        if self.when is not None:
            self.cron()
        elif self.timezone is not None:
            raise ConfigError("timezone is a schedule's: give when too, or leave it out")

    def cron(self) -> Cron | None:
        """A schedule's clock; None for a task queue."""
        if self.when is None:
            return None
        return Cron.parse(self.when, "UTC" if self.timezone is None else self.timezone)

    def to_json(self) -> str:
        return orjson.dumps(asdict(self), option=orjson.OPT_SORT_KEYS).decode()

    def to_dict(self) -> dict[str, Any]:
        value = orjson.loads(self.to_json())
        assert isinstance(value, dict)
        return value

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QueueConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(str(key) for key in set(data) - known)
        if unknown:
            raise ConfigError(f"unknown queue config keys: {', '.join(unknown)}")
        values = dict(data)
        try:
            if "autoscaler" in values:
                values["autoscaler"] = AutoscalerConfig.from_value(values["autoscaler"])
            if "retry_for" in values:
                retry_for = values["retry_for"]
                if not isinstance(retry_for, list | tuple):
                    raise ConfigError(
                        f"retry_for must be a list of exception class names, got {_show(retry_for)}"
                    )
                values["retry_for"] = tuple(retry_for)
            if "env" in values and not isinstance(values["env"], Mapping):
                raise ConfigError(f"env must be an object of strings, got {_show(values['env'])}")
            if "memory" in values:
                values["memory"] = parse_memory(values["memory"])
            if values.get("image") is not None:
                values["image"] = Image.from_value(values["image"])
            if isinstance(values.get("secrets"), list):
                values["secrets"] = tuple(values["secrets"])
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"invalid queue config: {exc}") from None

    @classmethod
    def from_json(cls, text: str | bytes) -> QueueConfig:
        return cls.from_dict(_json_object(text))

    @classmethod
    def from_client(cls, text: str | bytes) -> QueueConfig:
        """A config a client sent (``POST /v2/deployment/``): as ``from_json``, and fields only
        the server sets (``code_path``) must be absent or null."""
        data = _json_object(text)
        for name in sorted(SERVER_ONLY_FIELDS):
            if data.get(name) is not None:
                raise ConfigError(f"{name} is set by the server only; a deployment cannot set it")
        return cls.from_dict(data)

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


def _show(value: object) -> str:
    """A value for an error message, cut short: a message never echoes a megabyte."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{name} must be a number, got {_show(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {_show(value)}")


def _number_in(name: str, value: object, low: float, high: float) -> None:
    _number(name, value)
    assert isinstance(value, int | float)
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {_show(value)}")


def _int_in(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{name} must be an integer, got {_show(value)}")
    if value < low:
        raise ConfigError(f"{name} must be >= {low}, got {value}")
    if value > high:
        raise ConfigError(f"{name} must be at most {high}, got {_show(value)}")


def _retry_names(names: object) -> None:
    if not isinstance(names, tuple) or len(names) > RETRY_FOR_MAX:
        raise ConfigError(
            f"retry_for must be a list of at most {RETRY_FOR_MAX} exception class names, "
            f"got {_show(names)}"
        )
    for item in names:
        if not isinstance(item, str) or len(item) > 200 or not _DOTTED.fullmatch(item):
            raise ConfigError(
                f"retry_for must hold dotted class names such as 'ValueError' or "
                f"'app.Busy', got {_show(item)}"
            )


def is_secret_name(name: object) -> bool:
    """Whether ``name`` may name a secret (and so an environment variable)."""
    return isinstance(name, str) and len(name) <= 256 and bool(SECRET_NAME.fullmatch(name))


def _secret_names(names: object) -> None:
    if not isinstance(names, tuple) or len(names) > SECRETS_MAX:
        raise ConfigError(
            f"secrets must be a list of at most {SECRETS_MAX} secret names, got {_show(names)}"
        )
    for name in names:
        if not is_secret_name(name):
            raise ConfigError(
                f"secrets must hold names of upper-case letters, digits and '_', not "
                f"starting with a digit, got {_show(name)}"
            )


def _env(env: object) -> None:
    if not isinstance(env, Mapping) or len(env) > ENV_MAX:
        raise ConfigError(f"env must be an object of at most {ENV_MAX} strings, got {_show(env)}")
    for key, value in env.items():
        if not isinstance(key, str) or len(key) > 256 or not _ENV_NAME.fullmatch(key):
            raise ConfigError(
                f"env names must be letters, digits and '_', not starting with a digit, "
                f"got {_show(key)}"
            )
        if not isinstance(value, str) or len(value) > ENV_VALUE_MAX or "\x00" in value:
            raise ConfigError(
                f"env must map strings to strings: the value of {key} must be at most "
                f"{ENV_VALUE_MAX} characters without NUL, got {_show(value)}"
            )
