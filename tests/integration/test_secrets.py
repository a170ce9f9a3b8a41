"""Secrets reach a queue's sandboxed processes (DESIGN A9), on both backends, with real agents:
as environment variables (``on_start`` sees them), read at each container start so an update
reaches the containers started afterwards; a missing one fails the waiting task with
``SecretNotFound`` and starts nothing; another workspace's is never given; a key that cannot
decrypt fails it with ``SecretKeyError``."""

from __future__ import annotations

import pytest

from conveyor.server.agent.agent import Agent
from conveyor.server.secret_key import ENV_SECRET_KEY, SecretKey, new_key
from conveyor.server.store.base import Store
from conveyor.server.store.records import Stub, Workspace
from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, error_of, result_of, until

KEY = SecretKey(keys=new_key())
VALUE = "tok-\N{SNOWMAN}-0123456789"

SOURCE = """
    import os
    from conveyor import task_queue

    open({marker!r}, "a").close()  # the code loaded: a process started

    def setup():
        return os.environ.get("API_TOKEN")

    @task_queue(name="env", on_start=setup)
    def handler(context):
        return {{
            "token": os.environ.get("API_TOKEN"),
            "at_start": context.on_start_value,
            "plain": os.environ.get("PLAIN"),
            "key": os.environ.get("CONVEYOR_SECRET_KEY"),
        }}
"""


async def _queue(harness: Harness, name: str, **options: object) -> Stub:
    marker = harness.tmp_path / f"{name}.started"
    return await harness.queue(name, SOURCE.format(marker=str(marker)), **options)


async def _put_secret(store: Store, workspace: Workspace, name: str, value: str) -> None:
    await store.put_secret(workspace.id, name, KEY.encrypt(value))


async def _start(harness: Harness, stub: Stub, **settings: object) -> Agent:
    return await harness.start_agent([stub], secret_key=KEY, start_retry_s=0.2, **settings)


async def test_a_secret_is_in_the_environment_and_on_start_sees_it(
    harness: Harness, store: Store
) -> None:
    await _put_secret(store, harness.workspace, "API_TOKEN", VALUE)
    stub = await _queue(harness, "env", secrets=("API_TOKEN",),
                        env={"PLAIN": "plain", "API_TOKEN": "from env"})
    await _start(harness, stub)
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is TaskStatus.COMPLETE, view.task
    # The secret beats an env entry of its name; the agent's key is never given.
    assert result_of(view) == {"token": VALUE, "at_start": VALUE, "plain": "plain", "key": None}
    assert "API_TOKEN" in stub.config and VALUE not in stub.config


async def test_an_update_reaches_the_containers_started_afterwards(
    harness: Harness, store: Store
) -> None:
    await _put_secret(store, harness.workspace, "API_TOKEN", "first")
    stub = await _queue(harness, "env", secrets=("API_TOKEN",), keep_warm_seconds=0)
    agent = await _start(harness, stub)
    first = await harness.wait(await harness.put(stub))
    assert result_of(first)["token"] == "first"
    await _put_secret(store, harness.workspace, "API_TOKEN", "second")
    await until(lambda: not agent.stubs[stub.id].containers)  # keep_warm 0: it retires
    assert not agent.stubs[stub.id].containers
    second = await harness.wait(await harness.put(stub))
    assert result_of(second)["token"] == "second"


async def test_a_missing_secret_fails_the_task_and_starts_nothing(
    harness: Harness, store: Store
) -> None:
    stub = await _queue(harness, "env", secrets=("API_TOKEN", "MISSING_ONE"))
    await _put_secret(store, harness.workspace, "API_TOKEN", VALUE)
    await _start(harness, stub)
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is TaskStatus.FAILED
    error = error_of(view)
    assert error["type"] == "SecretNotFound" and "'MISSING_ONE'" in error["message"]
    assert VALUE not in view.task.error  # type: ignore[operator]
    assert not (harness.tmp_path / "env.started").exists()
    # Created, the secret lets the next start work (after the usual pause).
    await _put_secret(store, harness.workspace, "MISSING_ONE", "here now")
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is TaskStatus.COMPLETE and result_of(view)["token"] == VALUE


async def test_a_deleted_secret_fails_the_next_containers_task(
    harness: Harness, store: Store
) -> None:
    await _put_secret(store, harness.workspace, "API_TOKEN", VALUE)
    stub = await _queue(harness, "env", secrets=("API_TOKEN",), keep_warm_seconds=0)
    agent = await _start(harness, stub)
    assert (await harness.wait(await harness.put(stub))).task.status is TaskStatus.COMPLETE
    assert await store.delete_secret(harness.workspace.id, "API_TOKEN")
    await until(lambda: not agent.stubs[stub.id].containers)
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is TaskStatus.FAILED
    assert error_of(view)["type"] == "SecretNotFound"


async def test_another_workspaces_secret_is_never_given(harness: Harness, store: Store) -> None:
    other = await store.ensure_workspace("other")
    await _put_secret(store, other, "API_TOKEN", VALUE)
    stub = await _queue(harness, "env", secrets=("API_TOKEN",))
    await _start(harness, stub)
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is TaskStatus.FAILED
    assert error_of(view)["type"] == "SecretNotFound"
    assert not (harness.tmp_path / "env.started").exists()


async def test_a_key_that_cannot_decrypt_fails_the_task_with_SecretKeyError(
    harness: Harness, store: Store
) -> None:
    await _put_secret(store, harness.workspace, "API_TOKEN", VALUE)
    stub = await _queue(harness, "env", secrets=("API_TOKEN",))
    await harness.start_agent([stub], secret_key=SecretKey(keys=new_key()))
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is TaskStatus.FAILED
    error = error_of(view)
    assert error["type"] == "SecretKeyError" and "'API_TOKEN'" in error["message"]
    assert VALUE not in error["message"]


async def test_unsandboxed_the_agents_own_key_is_not_passed_on(
    harness: Harness, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_SECRET_KEY, str(KEY.keys))
    await _put_secret(store, harness.workspace, "API_TOKEN", VALUE)
    stub = await _queue(harness, "env", secrets=("API_TOKEN",))
    await _start(harness, stub, sandbox=False)
    view = await harness.wait(await harness.put(stub))
    assert result_of(view)["token"] == VALUE and result_of(view)["key"] is None
