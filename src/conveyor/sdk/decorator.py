"""The ``@task_queue`` decorator and what it makes.

Decorating only registers: it validates every value at once (a bad value raises
``ConfigError`` where the function is defined), and opens no connection and reads no
environment. ``.put()`` reaches a gateway through ``conveyor.sdk.client``, imported on first use.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import datetime
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NoReturn,
    ParamSpec,
    Protocol,
    TypeVar,
    Unpack,
    overload,
)

from conveyor.errors import ConfigError, DirectCallError
from conveyor.queue_config import AutoscalerConfig, QueueConfig
from conveyor.sdk import outputs
from conveyor.sdk.options import QueueOptions, check_options

if TYPE_CHECKING:
    from conveyor.sdk.client import Task

P = ParamSpec("P")
R = TypeVar("R")

#: The autoscaler of DESIGN A3: ``ceil(in_flight / tasks_per_container)`` containers,
#: between ``min_containers`` and ``max_containers``.
QueueDepthAutoscaler = AutoscalerConfig

#: ``QueueConfig.handler`` until ``TaskQueue.config`` is told where the function lives.
_UNPLACED = "<unplaced>"


@dataclass(frozen=True, slots=True)
class TaskContext:
    """What a handler with a ``context`` parameter learns about the attempt it runs in."""

    task_id: str
    #: 1 for the first attempt, 2 for the first retry, …
    attempt: int
    container_id: str
    stub_id: str
    #: ``taskqueue/deployment``, ``taskqueue/serve``, ``schedule/deployment``,
    #: ``schedule/serve``, or ``local`` under ``.local()``.
    stub_type: str
    callback_url: str | None
    #: Seconds the attempt may run; -1 means no limit.
    timeout: float
    #: What ``on_start`` returned in this process (None without ``on_start``).
    on_start_value: Any = None


@dataclass(frozen=True, slots=True)
class HandlerShape:
    """What a handler's signature asks for, found once so that each call stays cheap."""

    is_async: bool
    #: Declares a ``context`` parameter.
    wants_context: bool
    #: Declares a ``callback_url`` parameter.
    wants_callback_url: bool
    #: Has ``**kwargs``.
    takes_var_kwargs: bool

    @classmethod
    def of(cls, func: Callable[..., Any]) -> HandlerShape:
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # some builtins have no signature
            params = []
        names = {p.name for p in params}
        return cls(
            is_async=inspect.iscoroutinefunction(func),
            wants_context="context" in names,
            wants_callback_url="callback_url" in names,
            takes_var_kwargs=any(p.kind is p.VAR_KEYWORD for p in params),
        )

    def complete(
        self, kwargs: dict[str, Any], callback_url: str | None, context: TaskContext | None
    ) -> dict[str, Any]:
        """Add ``context`` and ``callback_url`` to ``kwargs`` where the handler takes them."""
        if self.wants_context:
            kwargs["context"] = context
        if "callback_url" not in kwargs and (
            self.wants_callback_url or (self.takes_var_kwargs and callback_url is not None)
        ):
            kwargs["callback_url"] = callback_url
        return kwargs


class TaskQueue(Generic[P, R]):
    """A function made a task queue: enqueue with ``.put()``, run here with ``.local()``.

    Calling it directly raises ``DirectCallError``: a task queue runs in containers.
    ``.put`` and ``.local`` are typed with the function's parameters; conveyor fills a
    ``context`` parameter itself, so declare it ``context: TaskContext | None = None`` for
    type checkers to accept calls without it.
    """

    def __init__(
        self,
        func: Callable[P, Any],
        config: QueueConfig,
        retry_for: tuple[type[BaseException], ...],
        on_start: Callable[[], Any] | None,
    ) -> None:
        self._func = func
        self._config = config
        self._retry_for = retry_for
        self._on_start = on_start
        self._shape = HandlerShape.of(func)
        self._started = False
        self._on_start_value: Any = None
        functools.update_wrapper(self, func)

    @property
    def name(self) -> str:
        return self._config.name

    @property
    def func(self) -> Callable[P, Any]:
        return self._func

    @property
    def on_start(self) -> Callable[[], Any] | None:
        return self._on_start

    @property
    def retry_for(self) -> tuple[type[BaseException], ...]:
        return self._retry_for

    def config(self, handler: str, code_path: str | None = None) -> QueueConfig:
        """The queue's configuration, placed at ``handler`` (``"path.py:function"``).

        ``code_path`` is the absolute folder of the code, for ``serve`` (no upload).
        """
        return replace(self._config, handler=handler, code_path=code_path)

    def put(self, *args: P.args, **kwargs: P.kwargs) -> Task:
        """Enqueue one task with these arguments on the configured gateway.

        The gateway comes from ``CONVEYOR_URL`` / ``CONVEYOR_TOKEN`` or the config file.
        """
        from conveyor.sdk.client import Client  # first use only: keeps decoration free of I/O

        return Client.from_env().put(self.name, *args, **kwargs)

    def options(
        self, *, delay: float | None = None, run_at: datetime | str | None = None
    ) -> PutOptions[P]:
        """``put`` with per-task options: not started before ``delay`` seconds from now, or
        before ``run_at`` (an aware ``datetime`` or ISO 8601 text); the task's ttl counts
        from then. ``resize.options(delay=30).put("a.png", width=100)``."""
        return PutOptions(self.name, delay, run_at)

    def local(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function in this process, as a container would (``on_start`` runs once).

        Outputs saved during the call are in ``conveyor.sdk.outputs.collected()`` afterwards.
        """
        if not self._started:
            self._on_start_value = _resolve(self._on_start()) if self._on_start else None
            self._started = True
        context = None
        if self._shape.wants_context:
            context = TaskContext(
                task_id=f"local-{uuid.uuid4()}",
                attempt=1,
                container_id="local",
                stub_id="",
                stub_type="local",
                callback_url=self._config.callback_url,
                timeout=self._config.timeout,
                on_start_value=self._on_start_value,
            )
        call_kwargs = self._shape.complete(dict(kwargs), self._config.callback_url, context)
        outputs.reset()
        result: R = _resolve(self._func(*args, **call_kwargs))
        return result

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> NoReturn:
        raise DirectCallError(
            f"task queue {self.name!r} cannot be called directly: use {self.name}.put(...) "
            f"to enqueue a task or {self.name}.local(...) to run it in this process"
        )

    def __repr__(self) -> str:
        return f"TaskQueue(name={self.name!r})"


@dataclass(frozen=True, slots=True)
class PutOptions(Generic[P]):
    """A queue's ``put`` with per-task options (``TaskQueue.options``)."""

    name: str
    delay: float | None = None
    run_at: datetime | str | None = None

    def put(self, *args: P.args, **kwargs: P.kwargs) -> Task:
        from conveyor.sdk.client import Client

        options: dict[str, Any] = {"delay": self.delay, "run_at": self.run_at}
        return Client.from_env().put(self.name, *args, **options, **kwargs)


def _resolve(value: Any) -> Any:
    """Await ``value`` on a fresh event loop if it is awaitable (an async handler's call)."""
    if inspect.isawaitable(value):
        import asyncio  # only async handlers pay for it: worker processes start faster

        return asyncio.run(_await(value))
    return value


async def _await(value: Awaitable[Any]) -> Any:
    return await value


class _Decorator(Protocol):
    @overload
    def __call__(self, func: Callable[P, Coroutine[Any, Any, R]], /) -> TaskQueue[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R], /) -> TaskQueue[P, R]: ...


@overload
def task_queue(func: Callable[P, Coroutine[Any, Any, R]], /) -> TaskQueue[P, R]: ...
@overload
def task_queue(func: Callable[P, R], /) -> TaskQueue[P, R]: ...
@overload
def task_queue(func: None = None, /, **options: Unpack[QueueOptions]) -> _Decorator: ...
def task_queue(func: Callable[..., Any] | None = None, /, **options: Unpack[QueueOptions]) -> Any:
    """Make a function a task queue.

    Usable bare (``@task_queue``) or called (``@task_queue(name="resize", timeout=60)``) with
    the keywords of ``QueueOptions``. Every value is checked here: an invalid one raises
    ``ConfigError``.
    """
    checked = check_options(options)

    def decorate(target: Callable[..., Any]) -> TaskQueue[Any, Any]:
        if isinstance(target, TaskQueue):
            raise ConfigError(f"{target.name!r} is already a task queue")
        if not callable(target):
            raise ConfigError(
                f"@task_queue decorates a function, got {target!r}; "
                "pass options by keyword, e.g. @task_queue(name='resize')"
            )
        config = checked.queue_config(getattr(target, "__name__", ""), _UNPLACED)
        return TaskQueue(target, config, checked.retry_classes, checked.on_start)

    if func is None:
        return decorate
    return decorate(func)
