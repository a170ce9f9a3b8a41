from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import conveyor
from conveyor import (
    ConfigError,
    ConveyorError,
    DirectCallError,
    Output,
    QueueDepthAutoscaler,
    TaskContext,
    TaskQueue,
    task_queue,
)
from conveyor.queue_config import AutoscalerConfig, QueueConfig
from conveyor.sdk import outputs
from conveyor.sdk.options import QueueOptions


@pytest.fixture(autouse=True)
def empty_collector() -> Iterator[None]:
    outputs.reset()
    yield
    outputs.reset()


class Transient(Exception):
    pass


def test_bare_decorator_gives_the_documented_defaults() -> None:
    @task_queue
    def resize(path: str) -> str:
        return path

    assert isinstance(resize, TaskQueue)
    assert resize.name == "resize"
    assert resize.on_start is None
    assert resize.retry_for == ()
    config = resize.config("app.py:resize")
    assert config == QueueConfig(name="resize", handler="app.py:resize")
    assert (config.timeout, config.max_retries, config.ttl) == (3600, 3, 7200)
    assert (config.max_pending_tasks, config.workers, config.keep_warm_seconds) == (100, 1, 10)
    assert config.autoscaler == AutoscalerConfig(0, 1, 1)
    assert (config.cpu, config.memory, config.env, config.authorized) == (1.0, 128, {}, True)
    assert (config.retry_backoff, config.callback_url, config.code_path) == (0, None, None)
    # The wrapper looks like the function it wraps.
    assert getattr(resize, "__name__", None) == "resize"
    assert resize.__wrapped__ is resize.func  # type: ignore[attr-defined]


def test_called_decorator_carries_every_value() -> None:
    def warm() -> str:
        return "model"

    @task_queue(
        name="thumbs",
        timeout=-1,
        max_retries=5,
        retry_for=[Transient, OSError],
        retry_backoff=1.5,
        ttl=86400,
        max_pending_tasks=7,
        workers=3,
        keep_warm_seconds=0,
        autoscaler=QueueDepthAutoscaler(min_containers=1, max_containers=4, tasks_per_container=10),
        on_start=warm,
        callback_url="https://example.com/hook",
        authorized=False,
        cpu=0.5,
        memory="1Gi",
        env={"MODE": "fast"},
    )
    def make(path: str) -> None:
        pass

    assert make.name == "thumbs"
    assert make.on_start is warm
    assert make.retry_for == (Transient, OSError)
    config = make.config("pkg/app.py:make", code_path="/srv/code")
    assert config.handler == "pkg/app.py:make"
    assert config.code_path == "/srv/code"
    assert config.retry_for == (f"{__name__}.Transient", "OSError")
    assert config.timeout == -1
    assert config.memory == 1024
    assert config.autoscaler == AutoscalerConfig(1, 4, 10)
    assert config.env == {"MODE": "fast"}
    assert (config.workers, config.authorized, config.cpu) == (3, False, 0.5)
    # The config survives its JSON trip unchanged: this is what the agents read.
    assert QueueConfig.from_json(config.to_json()) == config


def test_retries_is_an_alias() -> None:
    @task_queue(retries=1)
    def one() -> None:
        pass

    @task_queue(retries=2, max_retries=2)
    def two() -> None:
        pass

    assert one.config("a.py:one").max_retries == 1
    assert two.config("a.py:two").max_retries == 2
    with pytest.raises(ConfigError, match="disagree"):
        task_queue(retries=1, max_retries=4)(lambda: None)


def noop() -> None:
    pass


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"autoscaler": QueueDepthAutoscaler}, "autoscaler"),
        ({"max_retries": 6}, "max_retries must be at most 5"),
        ({"retries": 9}, "max_retries must be at most 5"),
        ({"max_retries": -1}, "max_retries"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": -5}, "ttl"),
        ({"ttl": 86401}, "ttl must be between 1 and 86400"),
        ({"timeout": -2}, "timeout"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "60"}, "timeout must be a number"),
        ({"memory": "lots"}, "memory 'lots' is not understood"),
        ({"memory": 0}, "memory"),
        ({"memory": True}, "memory"),
        ({"retry_for": [ValueError, "OSError"]}, "retry_for must hold exception classes"),
        ({"retry_for": [int]}, "retry_for must hold exception classes"),
        ({"retry_for": "ValueError"}, "retry_for must be a list"),
        ({"retry_for": 3}, "retry_for must be a list"),
        ({"on_start": "warm"}, "on_start must be callable"),
        ({"workers": 0}, "workers"),
        ({"max_pending_tasks": 0}, "max_pending_tasks"),
        ({"retry_backoff": -1}, "retry_backoff"),
        ({"keep_warm_seconds": -1}, "keep_warm_seconds"),
        ({"cpu": 0}, "cpu"),
        ({"env": {"A": 1}}, "env must map strings to strings"),
        ({"env": ["A=1"]}, "env must be a mapping"),
        ({"callback_url": "ftp://x"}, "callback_url"),
        ({"authorized": "yes"}, "authorized"),
        ({"name": "has space"}, "queue name"),
        ({"name": "public"}, "reserved"),
    ],
)
def test_invalid_values_are_refused_at_decoration(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        task_queue(**options)(noop)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"tasks_per_container": 0}, "tasks_per_container must be >= 1"),
        ({"max_containers": 0}, "max_containers"),
        ({"min_containers": -1}, "min_containers"),
        ({"min_containers": 3, "max_containers": 2}, "must not exceed"),
    ],
)
def test_invalid_autoscaler_is_refused(options: dict[str, int], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        QueueDepthAutoscaler(**options)


def test_positional_name_is_explained() -> None:
    with pytest.raises(ConfigError, match="by keyword"):
        task_queue("resize")  # type: ignore[call-overload]


def test_direct_call_points_to_put_and_local() -> None:
    @task_queue
    def resize(path: str) -> str:
        return path

    with pytest.raises(DirectCallError) as info:
        resize("a.png")
    assert isinstance(info.value, ConveyorError)
    assert "resize.put(" in str(info.value)
    assert "resize.local(" in str(info.value)


def test_local_runs_on_start_once_and_passes_context() -> None:
    starts: list[int] = []

    def warm() -> dict[str, str]:
        starts.append(1)
        return {"model": "loaded"}

    @task_queue(on_start=warm, timeout=60, callback_url="https://example.com/cb")
    def work(x: int, *, scale: int = 1, context: TaskContext) -> dict[str, Any]:
        Output.from_bytes("out.txt", str(x * scale).encode()).save()
        return {"value": x * scale, "ctx": context}

    # The runtime supplies ``context``; static checkers cannot know it (a ParamSpec keeps it).
    first = work.local(2, scale=3)  # type: ignore[call-arg]
    second = work.local(5)  # type: ignore[call-arg]
    assert starts == [1]
    assert first["value"] == 6 and second["value"] == 5
    ctx = first["ctx"]
    assert isinstance(ctx, TaskContext)
    assert ctx.on_start_value == {"model": "loaded"}
    assert ctx.attempt == 1
    assert ctx.timeout == 60
    assert ctx.callback_url == "https://example.com/cb"
    assert ctx.task_id.startswith("local-") and ctx.task_id != second["ctx"].task_id
    # The collector holds the outputs of the last local call only.
    assert outputs.collected() == [("out.txt", b"5")]


def test_local_without_context_parameter_gets_no_context() -> None:
    @task_queue
    def plain(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    assert plain.local(a=1) == {"a": 1}


def test_local_runs_async_handlers_and_async_on_start() -> None:
    async def warm() -> int:
        return 41

    @task_queue(on_start=warm)
    async def add(x: int, context: TaskContext) -> int:
        return x + int(context.on_start_value)

    assert add.local(1) == 42  # type: ignore[call-arg]


def test_local_propagates_exceptions() -> None:
    @task_queue(retry_for=[Transient])
    def boom() -> None:
        raise Transient("again")

    with pytest.raises(Transient, match="again"):
        boom.local()


def test_decorating_twice_is_refused() -> None:
    @task_queue
    def once() -> None:
        pass

    with pytest.raises(ConfigError, match="already a task queue"):
        task_queue(once)


def test_put_uses_the_client_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    # Without configuration, .put() fails with a conveyor error, not at decoration.
    pytest.importorskip("conveyor.sdk.client")
    monkeypatch.delenv("CONVEYOR_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_TOKEN", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent-conveyor-home")

    @task_queue
    def resize(path: str) -> str:
        return path

    with pytest.raises(ConveyorError):
        resize.put("a.png")


def test_import_and_decoration_do_no_io() -> None:
    # A fresh interpreter: importing conveyor and decorating must not load the HTTP client.
    code = (
        "import sys, conveyor\n"
        "@conveyor.task_queue(name='q')\n"
        "def f(): pass\n"
        "bad = [m for m in ('conveyor.sdk.client', 'httpx') if m in sys.modules]\n"
        "print(bad)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == "[]"


def test_public_names() -> None:
    for name in conveyor.__all__:
        if name not in {"Client", "AsyncClient", "Task"}:
            assert getattr(conveyor, name) is not None
    with pytest.raises(AttributeError):
        conveyor.NoSuchThing  # noqa: B018


def test_every_option_is_a_config_field_or_the_decorators_own() -> None:
    # An option missing from QueueConfig would have a default of its own in the decorator.
    own = {"retries", "on_start"}
    assert QueueOptions.__optional_keys__ - own <= set(QueueConfig.__dataclass_fields__)


def test_client_names_load_on_first_use() -> None:
    from conveyor.sdk.async_client import AsyncClient
    from conveyor.sdk.client import Client, Task

    assert (conveyor.Client, conveyor.AsyncClient, conveyor.Task) == (Client, AsyncClient, Task)
