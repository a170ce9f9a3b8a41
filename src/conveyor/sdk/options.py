"""The keywords of ``@task_queue``: their types, and their check on the way to a ``QueueConfig``.

A keyword left out is left out of the config too, so it takes the default of the
``QueueConfig`` field of its name: the defaults are written once, there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from conveyor.errors import ConfigError
from conveyor.image import Image
from conveyor.policy import qualified_name
from conveyor.queue_config import AutoscalerConfig, QueueConfig, parse_memory


class QueueOptions(TypedDict, total=False):
    """The keywords of ``@task_queue`` (DESIGN A3 gives each one's rule)."""

    #: The function's ``__name__`` when left out.
    name: str | None
    timeout: float
    max_retries: int
    #: An alias of ``max_retries``.
    retries: int | None
    retry_for: Iterable[type[BaseException]] | type[BaseException]
    retry_backoff: float
    ttl: int
    max_pending_tasks: int
    workers: int
    keep_warm_seconds: float
    #: ``QueueDepthAutoscaler()`` when left out.
    autoscaler: AutoscalerConfig | None
    #: Runs once per worker process, before its first task.
    on_start: Callable[[], Any] | None
    callback_url: str | None
    authorized: bool
    cpu: float
    #: MiB, or a string such as ``"1Gi"``.
    memory: int | str
    env: Mapping[str, str] | None
    #: The queue's own Python packages (DESIGN A9).
    image: Image | None
    #: Workspace secrets given to its processes as environment variables.
    secrets: Iterable[str]


@dataclass(frozen=True, slots=True)
class CheckedOptions:
    """``QueueOptions`` checked: the decorator's own values, the rest as ``QueueConfig`` fields."""

    name: str | None
    on_start: Callable[[], Any] | None
    retry_classes: tuple[type[BaseException], ...]
    fields: Mapping[str, Any]

    def queue_config(self, default_name: str, handler: str) -> QueueConfig:
        fields = dict(self.fields)
        if "memory" in fields:
            fields["memory"] = parse_memory(fields["memory"])
        name = self.name if self.name is not None else default_name
        return QueueConfig(name=name, handler=handler, **fields)


def check_options(options: Mapping[str, Any]) -> CheckedOptions:
    """Check ``options`` (keywords of ``QueueOptions``); ``ConfigError`` names a bad value."""
    unknown = options.keys() - QueueOptions.__optional_keys__
    if unknown:  # as Python says it for a function with named parameters
        raise TypeError(f"task_queue() got an unexpected keyword argument {min(unknown)!r}")
    fields = dict(options)
    name = fields.pop("name", None)
    on_start = fields.pop("on_start", None)
    if on_start is not None and not callable(on_start):
        raise ConfigError(f"on_start must be callable, got {on_start!r}")
    retry_classes = _to_fields(fields)
    return CheckedOptions(name, on_start, retry_classes, fields)


def _to_fields(values: dict[str, Any]) -> tuple[type[BaseException], ...]:
    """Check what ``QueueConfig`` does not, and turn the decorator's own forms into its fields:
    ``retries`` into ``max_retries``, classes into ``retry_for`` names, a None ``autoscaler`` or
    ``env`` into the default. Returns the ``retry_for`` classes."""
    retries = values.pop("retries", None)
    if retries is not None:
        given = values.get("max_retries", retries)
        if given not in (retries, QueueConfig.__dataclass_fields__["max_retries"].default):
            raise ConfigError(
                f"retries ({retries}) and max_retries ({given}) disagree; give only one"
            )
        values["max_retries"] = retries
    retry_classes = _retry_classes(values.pop("retry_for", ()))
    values["retry_for"] = tuple(qualified_name(cls) for cls in retry_classes)
    authorized = values.get("authorized", True)
    if not isinstance(authorized, bool):
        raise ConfigError(f"authorized must be True or False, got {authorized!r}")
    autoscaler = values.pop("autoscaler", None)
    if autoscaler is not None:
        if not isinstance(autoscaler, AutoscalerConfig):
            raise ConfigError(f"autoscaler must be a QueueDepthAutoscaler, got {autoscaler!r}")
        values["autoscaler"] = autoscaler
    env = values.pop("env", None)
    if env is not None and not isinstance(env, Mapping):
        raise ConfigError(f"env must be a mapping of strings to strings, got {env!r}")
    values["env"] = dict(env or {})
    if values.get("image", ...) is None:
        values.pop("image")
    secrets = values.pop("secrets", ())
    if isinstance(secrets, str | bytes) or not isinstance(secrets, Iterable):
        raise ConfigError(f"secrets must be a list of secret names, got {secrets!r}")
    values["secrets"] = tuple(secrets)
    return retry_classes


def _retry_classes(
    retry_for: Iterable[type[BaseException]] | type[BaseException],
) -> tuple[type[BaseException], ...]:
    items: Iterable[object]
    if isinstance(retry_for, type):
        items = (retry_for,)
    elif isinstance(retry_for, str | bytes) or not isinstance(retry_for, Iterable):
        raise ConfigError(f"retry_for must be a list of exception classes, got {retry_for!r}")
    else:
        items = retry_for
    classes = tuple(items)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise ConfigError(f"retry_for must hold exception classes, got {cls!r}")
    return classes
