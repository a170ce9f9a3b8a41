"""Queues' images (DESIGN A9) built for real by uv from the package index this machine is set
up for, run by real agents on both stores: each queue sees its own packages and never the
agent's, a spec that cannot build fails its task, and a built environment is reused.

Every build uses the suite's one uv cache (``uv_cache``), so a spec's wheels are downloaded
once per session; a build from that cache takes about a second.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from pathlib import Path

import pytest

from conveyor.image import Image
from conveyor.server.agent.sandbox import site_packages
from conveyor.server.gateway.views import queue_json
from conveyor.server.store.records import AgentInfo
from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, error_of, result_of, until
from tests.sandboxing import require_sandbox, sandbox_settings

SIX = """
    import os, sys, time

    def handler(me, other, folder, agent_site):
        import six

        open(os.path.join(folder, me), "w").close()
        deadline = time.time() + 30  # both queues' processes run at the same time
        while not os.path.exists(os.path.join(folder, other)) and time.time() < deadline:
            time.sleep(0.02)
        try:
            import fastapi  # one of the agent's own packages
            agents_package = True
        except ImportError:
            agents_package = False
        return {
            "six": six.__version__,
            "together": os.path.exists(os.path.join(folder, other)),
            "agents_package": agents_package,
            "agent_site_seen": os.path.exists(agent_site),
            "prefix": sys.prefix,
        }
"""


async def _with_build_state(harness: Harness, stub_id: str) -> list[AgentInfo]:
    """The live agents once one says how ``stub_id``'s image built (its next heartbeat)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        agents = await harness.store.live_agents()
        if any(stub_id in a.builds and a.builds[stub_id]["state"] != "building" for a in agents):
            return agents
        await asyncio.sleep(0.1)
    raise AssertionError(f"no agent said how the image of {stub_id} built")


@pytest.fixture(autouse=True)
def _six_is_not_the_agents() -> None:
    assert importlib.util.find_spec("six") is None, "these tests need six absent from the agent"


async def test_two_queues_pin_conflicting_versions_side_by_side(
    harness: Harness, tmp_path: Path, uv_cache: Path
) -> None:
    # (its build takes 2 s more: meanwhile, the queue without an image goes on)
    slow = Image(python_packages=["six==1.16.0"], commands=["sleep 2"])
    old = await harness.queue("old", SIX, image=slow)
    new = await harness.queue("new", SIX, image=Image(python_packages=["six==1.17.0"]))
    plain = await harness.queue("plain", "def handler():\n    import six\n")
    folder = tmp_path / "markers"
    folder.mkdir()
    agent_site = site_packages()[0]
    lines: list[str] = []
    await harness.start_agent([old, new, plain], say=lines.append, uv_cache=uv_cache)
    first = await harness.put(old, "old", "new", str(folder), agent_site)
    second = await harness.put(new, "new", "old", str(folder), agent_site)
    without = await harness.put(plain)

    views = [await harness.wait(t, timeout=120) for t in (first, second)]
    assert [v.task.status for v in views] == [TaskStatus.COMPLETE] * 2, views
    results = [result_of(v) for v in views]
    assert [r["six"] for r in results] == ["1.16.0", "1.17.0"]
    assert all(r["together"] for r in results)
    assert not any(r["agents_package"] for r in results)
    assert results[0]["prefix"] != results[1]["prefix"] != sys.prefix
    if sandbox_settings()["sandbox"]:
        assert not any(r["agent_site_seen"] for r in results)

    # A queue without an image runs in the agent's own environment, which has no six.
    view = await harness.wait(without)
    assert view.task.status is TaskStatus.FAILED
    assert error_of(view)["type"].endswith("ModuleNotFoundError")
    assert "six" in error_of(view)["message"]
    assert view.task.ended_at is not None and views[0].task.started_at is not None
    assert view.task.ended_at < views[0].task.started_at  # not held up by a build

    building = [line for line in lines if "building the image" in line]
    assert len(building) == 2 and any("six==1.16.0" in line for line in building)
    assert sum("built in" in line for line in lines) == 2

    # GET /v2/taskqueue/{name}: each version's spec and, per agent, its build state.
    [agent] = [a for a, _, _ in harness.agents]
    agents = await _with_build_state(harness, old.id)
    [summary] = await harness.store.queue_summaries(harness.workspace.id, "old")
    [version] = queue_json(summary, agents)["versions"]
    assert version["image"]["python_packages"] == ["six==1.16.0"]
    assert version["builds"] == [{"agent": agent.settings.agent_id, "state": "ready"}]
    [summary] = await harness.store.queue_summaries(harness.workspace.id, "plain")
    assert queue_json(summary, agents)["versions"][0]["image"] is None


async def test_a_spec_that_cannot_build_fails_its_task_and_is_not_built_again_at_once(
    harness: Harness, tmp_path: Path, uv_cache: Path
) -> None:
    image = Image(python_packages=["no-such-package-conveyor-test==1.0"])
    stub = await harness.queue("broken", "def handler():\n    return 1\n", image=image)
    lines: list[str] = []
    await harness.start_agent([stub], say=lines.append, uv_cache=uv_cache, start_retry_s=0.2)
    view = await harness.wait(await harness.put(stub), timeout=120)
    assert view.task.status is TaskStatus.FAILED
    error = error_of(view)
    assert error["type"] == "ImageBuildError"
    assert "no-such-package-conveyor-test" in error["message"]
    assert len(error["message"].splitlines()) <= 50
    assert any("failed to build" in line for line in lines)

    # Within a minute the same spec is not built again: the next task fails at once.
    [log] = (tmp_path / "envs").glob("*.log")
    built = log.stat().st_mtime_ns
    started = time.monotonic()
    again = await harness.wait(await harness.put(stub), timeout=30)
    assert again.task.status is TaskStatus.FAILED
    assert error_of(again)["type"] == "ImageBuildError"
    assert error_of(again)["message"] == error["message"]
    assert time.monotonic() - started < 5
    assert log.stat().st_mtime_ns == built
    assert log.read_text().count("$ ") == 2  # one uv venv, one uv pip install: one build
    assert sum("building the image" in line for line in lines) == 1

    [info] = await _with_build_state(harness, stub.id)
    assert info.builds[stub.id]["state"] == "failed"
    assert "no-such-package-conveyor-test" in info.builds[stub.id]["message"]


async def test_requirements_file_warmup_commands_once_and_a_second_agent_reuses_it(
    harness: Harness, tmp_path: Path, uv_cache: Path
) -> None:
    source = """
        import os, sys

        def handler():
            import six
            with open(os.path.join(sys.prefix, "commands.txt")) as ran:
                return {"six": six.__version__, "commands": ran.read().splitlines()}
    """
    image = Image(
        requirements="deps/requirements.txt",
        commands=['echo "$(python -c "import six; print(six.__version__)")" >> commands.txt'],
    )
    stub = await harness.queue("reqs", source, image=image)
    deps = tmp_path / "code" / "reqs" / "deps"
    deps.mkdir()
    (deps / "requirements.txt").write_text("# pinned\nsix==1.16.0\n")
    first: list[str] = []
    agent = await harness.start_agent([stub], say=first.append, uv_cache=uv_cache)
    await until(lambda: stub.id in agent.stubs, 10)
    agent.warmup(stub.id, time.time())  # builds ahead, before any task
    await until(lambda: any((tmp_path / "envs").glob("*.ready")), 60)
    assert any("built in" in line for line in first)
    view = await harness.wait(await harness.put(stub), timeout=120)
    assert view.task.status is TaskStatus.COMPLETE, view.task
    assert result_of(view) == {"six": "1.16.0", "commands": ["1.16.0"]}
    [ready] = (tmp_path / "envs").glob("*.ready")
    [log] = (tmp_path / "envs").glob("*.log")
    built = log.stat().st_mtime_ns
    await harness.stop_agents()

    # Another agent on the same folder (a restart): the environment is there, not rebuilt.
    second: list[str] = []
    await harness.start_agent([stub], say=second.append, uv_cache=uv_cache)
    view = await harness.wait(await harness.put(stub), timeout=60)
    assert view.task.status is TaskStatus.COMPLETE, view.task
    assert result_of(view) == {"six": "1.16.0", "commands": ["1.16.0"]}  # commands ran once
    assert log.stat().st_mtime_ns == built and ready.exists()
    assert first and not second


async def test_an_images_commands_run_sandboxed(
    harness: Harness, tmp_path: Path, uv_cache: Path
) -> None:
    require_sandbox()
    agent_site = site_packages()[0]
    source = """
        import os, sys

        def handler():
            with open(os.path.join(sys.prefix, "reached.txt")) as said:
                return said.read().split()
    """
    image = Image(commands=[
        f"ls {agent_site} >/dev/null 2>&1 && echo read-agent-site >> reached.txt || true",
        f"touch {sys.prefix}/mallory 2>/dev/null && echo wrote-agent >> reached.txt || true",
        "touch /usr/mallory 2>/dev/null && echo wrote-usr >> reached.txt || true",
        "echo done >> reached.txt",
    ])  # fmt: skip
    stub = await harness.queue("mallory", source, image=image)
    await harness.start_agent([stub], uv_cache=uv_cache)
    view = await harness.wait(await harness.put(stub), timeout=120)
    assert view.task.status is TaskStatus.COMPLETE, view.task
    assert result_of(view) == ["done"]
    assert not Path(sys.prefix, "mallory").exists()


async def test_a_requirements_file_cannot_read_the_agents_files_into_its_error(
    harness: Harness, tmp_path: Path, uv_cache: Path
) -> None:
    """uv quotes a file a requirements file includes (``-r``) in its error: the build sees
    what a handler sees, so a file of the agent's (a token) is not there to quote."""
    require_sandbox()
    secret = tmp_path.parent / f"{tmp_path.name}-agent-only" / "token"
    secret.parent.mkdir()
    secret.write_text("cv_agents_secret_token\n")
    stub = await harness.queue("nosy", "def handler():\n    return 1\n",
                               image=Image(requirements="requirements.txt"))  # fmt: skip
    (tmp_path / "code" / "nosy" / "requirements.txt").write_text(f"-r {secret}\n")
    await harness.start_agent([stub], uv_cache=uv_cache)
    view = await harness.wait(await harness.put(stub), timeout=120)
    assert view.task.status is TaskStatus.FAILED
    error = error_of(view)
    assert error["type"] == "ImageBuildError" and str(secret) in error["message"]
    assert "cv_agents_secret_token" not in error["message"].replace(str(secret), "")
