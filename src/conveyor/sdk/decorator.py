"""The ``@task_queue`` decorator and what it makes.

Decorating only registers: it validates every value at once (a bad value raises
``ConfigError`` where the function is defined), and opens no connection and reads no
environment. ``.put()`` reaches a gateway through ``conveyor.sdk.client``, imported on first use.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, NoReturn, ParamSpec, Protocol, TypeVar, overload

from conveyor.errors import ConfigError, DirectCallError
from conveyor.policy import qualified_name
from conveyor.queue_config import AutoscalerConfig, QueueConfig, parse_memory
from conveyor.sdk import outputs

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
    #: ``taskqueue/deployment``, ``taskqueue/serve``, or ``local`` under ``.local()``.
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
def task_queue(
    func: None = None,
    /,
    *,
    name: str | None = None,
    timeout: float = 3600,
    max_retries: int = 3,
    retries: int | None = None,
    retry_for: Iterable[type[BaseException]] | type[BaseException] = (),
    retry_backoff: float = 0,
    ttl: int = 7200,
    max_pending_tasks: int = 100,
    workers: int = 1,
    keep_warm_seconds: float = 10,
    autoscaler: AutoscalerConfig | None = None,
    on_start: Callable[[], Any] | None = None,
    callback_url: str | None = None,
    authorized: bool = True,
    cpu: float = 1.0,
    memory: int | str = 128,
    env: Mapping[str, str] | None = None,
) -> _Decorator: ...
def task_queue(
    func: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float = 3600,
    max_retries: int = 3,
    retries: int | None = None,
    retry_for: Iterable[type[BaseException]] | type[BaseException] = (),
    retry_backoff: float = 0,
    ttl: int = 7200,
    max_pending_tasks: int = 100,
    workers: int = 1,
    keep_warm_seconds: float = 10,
    autoscaler: AutoscalerConfig | None = None,
    on_start: Callable[[], Any] | None = None,
    callback_url: str | None = None,
    authorized: bool = True,
    cpu: float = 1.0,
    memory: int | str = 128,
    env: Mapping[str, str] | None = None,
) -> Any:
    """Make a function a task queue (DESIGN A3 lists every parameter and its rule).

    Usable bare (``@task_queue``) or called (``@task_queue(name="resize", timeout=60)``).
    ``retries`` is an alias of ``max_retries``. ``autoscaler`` defaults to
    ``QueueDepthAutoscaler()``. ``memory`` is MiB or a string such as ``"1Gi"``.
    Every value is checked here: an invalid one raises ``ConfigError``.
    """
    if retries is not None:
        if max_retries != 3 and retries != max_retries:
            raise ConfigError(
                f"retries ({retries}) and max_retries ({max_retries}) disagree; give only one"
            )
        max_retries = retries
    retry_classes = _retry_classes(retry_for)
    if on_start is not None and not callable(on_start):
        raise ConfigError(f"on_start must be callable, got {on_start!r}")
    if not isinstance(authorized, bool):
        raise ConfigError(f"authorized must be True or False, got {authorized!r}")
    if autoscaler is None:
        autoscaler = AutoscalerConfig()
    elif not isinstance(autoscaler, AutoscalerConfig):
        raise ConfigError(f"autoscaler must be a QueueDepthAutoscaler, got {autoscaler!r}")
    if env is not None and not isinstance(env, Mapping):
        raise ConfigError(f"env must be a mapping of strings to strings, got {env!r}")

    def decorate(target: Callable[..., Any]) -> TaskQueue[Any, Any]:
        if isinstance(target, TaskQueue):
            raise ConfigError(f"{target.name!r} is already a task queue")
        if not callable(target):
            raise ConfigError(
                f"@task_queue decorates a function, got {target!r}; "
                "pass options by keyword, e.g. @task_queue(name='resize')"
            )
        config = QueueConfig(
            name=name if name is not None else getattr(target, "__name__", ""),
            handler=_UNPLACED,
            timeout=timeout,
            max_retries=max_retries,
            retry_for=tuple(qualified_name(cls) for cls in retry_classes),
            retry_backoff=retry_backoff,
            ttl=ttl,
            max_pending_tasks=max_pending_tasks,
            workers=workers,
            keep_warm_seconds=keep_warm_seconds,
            autoscaler=autoscaler,
            callback_url=callback_url,
            authorized=authorized,
            cpu=cpu,
            memory=parse_memory(memory),
            env=dict(env or {}),
        )
        return TaskQueue(target, config, retry_classes, on_start)

    if func is None:
        return decorate
    return decorate(func)


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
