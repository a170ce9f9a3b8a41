"""The ``@schedule`` decorator: a function the clock calls (DESIGN A10).

A schedule is a task queue whose tasks the clock makes: one per tick of its cron expression,
read in its time zone, whatever number of gateways and agents run. It takes every keyword of
``@task_queue`` (``timeout``, ``max_retries``, ``ttl``, ``workers``, …) and is served and
deployed the same way; its function is called with no arguments (or only a ``context``).
As with ``@task_queue``, decorating only registers and checks: ``when`` and ``timezone`` are
refused here, naming the field, when they are not valid.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ParamSpec, Protocol, TypeVar, Unpack, overload

from conveyor import clock
from conveyor.cron import Cron
from conveyor.errors import ConfigError
from conveyor.sdk.decorator import _UNPLACED, TaskQueue
from conveyor.sdk.options import QueueOptions, check_options

P = ParamSpec("P")
R = TypeVar("R")


class Schedule(TaskQueue[P, R]):
    """A function made a schedule. ``.local()`` runs it here; ``.put()`` makes a task of it
    now, outside its ticks."""

    @property
    def when(self) -> str:
        return self.cron.when

    @property
    def timezone(self) -> str:
        return self.cron.timezone

    @property
    def cron(self) -> Cron:
        cron = self.config(_UNPLACED).cron()
        assert cron is not None  # a schedule's config always has ``when``
        return cron

    def next_times(self, n: int = 3, after: datetime | None = None) -> list[datetime]:
        """Its next ``n`` ticks after ``after`` (default now), in its time zone."""
        start = clock.now() if after is None else after.timestamp()
        zone = self.cron.zone
        return [
            datetime.fromtimestamp(clock.from_us(t), UTC).astimezone(zone)
            for t in self.cron.after(clock.to_us(start), n)
        ]

    def __repr__(self) -> str:
        return f"Schedule(name={self.name!r}, when={self.when!r}, timezone={self.timezone!r})"


class _Decorator(Protocol):
    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Schedule[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> Schedule[P, R]: ...


def schedule(
    *, when: str, timezone: str = "UTC", **options: Unpack[QueueOptions]
) -> _Decorator:
    """Run the decorated function at each tick of ``when``: five cron fields
    (``"*/5 * * * *"``) or ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``,
    read in ``timezone`` (an IANA name). Other keywords are ``@task_queue``'s."""
    Cron.parse(when, timezone)
    checked = check_options(options)

    def decorate(target: Callable[..., Any]) -> Schedule[Any, Any]:
        if isinstance(target, TaskQueue):
            raise ConfigError(f"{target.name!r} is already a task queue or a schedule")
        if not callable(target):
            raise ConfigError(f"@schedule decorates a function, got {target!r}")
        _check_no_arguments(target)
        config = checked.queue_config(getattr(target, "__name__", ""), _UNPLACED)
        config = replace(config, when=when, timezone=timezone)
        return Schedule(target, config, checked.retry_classes, checked.on_start)

    return decorate


def _check_no_arguments(func: Callable[..., Any]) -> None:
    """The clock calls a schedule's function with no arguments, or only a ``context``."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # no signature to read: it is called as it is
        return
    needed = [
        p.name for p in params
        if p.default is p.empty and p.name != "context"
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if needed:
        raise ConfigError(
            f"a schedule's function is called with no arguments, but "
            f"{getattr(func, '__name__', func)!r} needs {', '.join(needed)}; give them defaults"
        )
