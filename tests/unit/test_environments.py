"""The cache of images' environments without uv: what a spec's key depends on, one build per
spec however many ask at once (in one process and across agents), a failed spec refused for a
minute, the sweep of unused environments, and what the sandbox of an image's process binds."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
import time
from pathlib import Path

import pytest

from conveyor.errors import ImageBuildError
from conveyor.image import Image
from conveyor.server.agent import environments
from conveyor.server.agent.environments import RETRY_FAILED_S, UNUSED_S, Environments
from conveyor.server.agent.image_build import Spec, spec_of
from conveyor.server.agent.sandbox import Sandbox, site_packages


def test_a_specs_key_follows_its_fields_and_its_requirements_files_content(
    tmp_path: Path,
) -> None:
    (tmp_path / "requirements.txt").write_text("six==1.16.0\n")
    image = Image(requirements="requirements.txt")
    first = spec_of(image, tmp_path)
    assert spec_of(Image(requirements="requirements.txt"), tmp_path).key == first.key
    assert first.requirements == "six==1.16.0\n"
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    assert spec_of(image, tmp_path).key != first.key
    assert spec_of(Image(python_packages=["six"]), tmp_path).key != first.key
    assert spec_of(Image(python_version="3.11"), tmp_path).python == "3.11"
    assert spec_of(Image(), tmp_path).python == sys.executable


def test_a_requirements_file_must_be_in_the_code_folder(tmp_path: Path) -> None:
    code = tmp_path / "code"
    code.mkdir()
    (tmp_path / "secret.txt").write_text("six\n")
    (code / "link.txt").symlink_to(tmp_path / "secret.txt")
    for name in ("link.txt", "missing.txt"):
        with pytest.raises(ImageBuildError, match=f"no file '{name}' in the code folder"):
            spec_of(Image(requirements=name), code)


def test_a_spec_cannot_name_the_builds_variables(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("pkg @ https://example.com/${UV_INDEX_URL}.whl\n")
    for image in (Image(python_packages=["six==${HOME}"]), Image(requirements="requirements.txt")):
        with pytest.raises(ImageBuildError, match="environment variables"):
            spec_of(image, tmp_path)


class FakeBuild:
    """Stands in for uv: makes the folder, counts itself, takes a moment."""

    runs = 0
    fail = False

    def __init__(self, spec: Spec, path: Path, log: Path, *args: object) -> None:
        self.path, self.log = path, log

    async def run(self) -> list[Path]:
        type(self).runs += 1
        self.log.write_text("$ uv venv\n")
        await asyncio.sleep(0.2)
        if self.fail:
            raise ImageBuildError("$ uv pip install\nno-such-package was not found\n✗ failed")
        self.path.mkdir()
        return [self.path]


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> type[FakeBuild]:
    class Counted(FakeBuild):
        runs = 0

    monkeypatch.setattr(environments, "Build", Counted)
    return Counted


def _envs(root: Path, said: list[str] | None = None) -> Environments:
    return Environments(root, root / "uv-cache", None, (said if said is not None else []).append)


async def test_one_build_per_spec_however_many_ask_in_one_agent_or_in_two(
    tmp_path: Path, fake_build: type[FakeBuild]
) -> None:
    spec = spec_of(Image(python_packages=["six"]), tmp_path)
    said: list[str] = []
    one, other = _envs(tmp_path / "envs", said), _envs(tmp_path / "envs")
    found = await asyncio.gather(
        *(one.ready(spec, "q v1") for _ in range(3)), other.ready(spec, "q v2")
    )
    assert fake_build.runs == 1
    assert {env.path for env in found} == {tmp_path / "envs" / spec.key}
    assert one.state(spec.key) == other.state(spec.key) == environments.BuildState("ready")
    assert [line.split(" (")[0].split(" in ")[0] for line in said] == [
        "◐ building the image of q v1", "✓ the image of q v1 built"
    ]
    # A later agent on the same folder (a restart) finds it built.
    assert (await _envs(tmp_path / "envs").ready(spec, "q v1")).path == found[0].path
    assert fake_build.runs == 1


async def test_a_failed_spec_is_refused_for_a_minute_then_built_again(
    tmp_path: Path, fake_build: type[FakeBuild]
) -> None:
    fake_build.fail = True
    spec = spec_of(Image(python_packages=["no-such-package"]), tmp_path)
    envs = _envs(tmp_path / "envs")
    for _ in range(2):
        with pytest.raises(ImageBuildError, match="no-such-package was not found"):
            await envs.ready(spec, "q v1")
    assert fake_build.runs == 1
    state = envs.state(spec.key)
    assert state is not None and state.state == "failed" and "not found" in (state.message or "")
    assert not (tmp_path / "envs" / spec.key).exists()
    failed = tmp_path / "envs" / f"{spec.key}.failed"
    past = time.time() - RETRY_FAILED_S - 1
    os.utime(failed, (past, past))
    fake_build.fail = False
    await envs.ready(spec, "q v1")
    assert fake_build.runs == 2 and not failed.exists()


async def test_a_stopped_build_is_an_image_build_error_for_those_waiting(
    tmp_path: Path, fake_build: type[FakeBuild]
) -> None:
    envs = _envs(tmp_path / "envs")
    waiting = asyncio.ensure_future(envs.ready(spec_of(Image(), tmp_path), "q v1"))
    await asyncio.sleep(0.05)
    await envs.close()
    with pytest.raises(ImageBuildError, match="the agent is stopping"):
        await waiting


async def test_the_machines_trouble_is_an_image_build_error_too(
    tmp_path: Path, fake_build: type[FakeBuild], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def no_disk(self: FakeBuild) -> list[Path]:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fake_build, "run", no_disk)
    with pytest.raises(ImageBuildError, match=r"could not build the image: .*No space left"):
        await _envs(tmp_path / "envs").ready(spec_of(Image(), tmp_path), "q v1")


def _built(root: Path, key: str, age_s: float) -> None:
    (root / key).mkdir(parents=True)
    for kind in ("ready", "log"):
        (root / f"{key}.{kind}").write_text("{}")
        then = time.time() - age_s
        os.utime(root / f"{key}.{kind}", (then, then))


def test_the_sweep_removes_environments_unused_for_a_day_only(tmp_path: Path) -> None:
    root = tmp_path / "envs"
    old, used, recent, locked = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
    for key in (old, used, locked):
        _built(root, key, UNUSED_S + 60)
    _built(root, recent, UNUSED_S - 60)
    (root / "uv-cache").mkdir()  # not an environment: never touched
    holder = os.open(root / f"{locked}.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another agent is building or removing it
    try:
        assert _envs(root).sweep({used}, time.time()) == [old]
    finally:
        os.close(holder)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == sorted(
        [used, recent, locked, "uv-cache"]
    )
    assert not any(p.name.startswith(old) for p in root.iterdir())


def _mounts(argv: list[str]) -> list[tuple[str, str]]:
    """bwrap's mounts in order, as (option, the path inside)."""
    found, i = [], 0
    while argv[i] != "--":
        option = argv[i]
        if option in ("--ro-bind", "--bind", "--symlink"):
            found.append((option, argv[i + 2]))
            i += 3
        elif option in ("--tmpfs", "--proc", "--dev"):
            found.append((option, argv[i + 1]))
            i += 2
        else:
            i += 1
    return found


def test_an_images_sandbox_binds_its_environment_not_the_agents_site_packages(
    tmp_path: Path,
) -> None:
    env, base = tmp_path / "envs" / ("e" * 32), Path(sys.base_prefix).resolve()
    env.mkdir(parents=True)
    sandbox = Sandbox(binds=(str(tmp_path),), hidden=(str(tmp_path / "envs"),))
    mounts = _mounts(sandbox.argv(["python"], None, runtime=[env, base]))
    agent_site = Path(os.path.realpath(site_packages()[0]))
    assert ("--ro-bind", str(base)) in mounts
    assert ("--ro-bind", str(agent_site)) not in mounts
    if agent_site.is_relative_to(base):  # a base that holds it: covered
        assert ("--tmpfs", str(agent_site)) in mounts
    # Its own environment shows, read-only, though the folder of all environments is hidden.
    assert mounts.index(("--tmpfs", str(tmp_path / "envs"))) < mounts.index(
        ("--ro-bind", str(env))
    )
    # While it is built, the environment and uv's cache (hidden from handlers) are writable.
    cache = tmp_path / "uv-cache"
    cache.mkdir()
    sandbox = Sandbox(binds=(str(tmp_path),), hidden=(str(tmp_path / "envs"), str(cache)))
    mounts = _mounts(sandbox.argv(["uv"], None, runtime=[base], writable=[env, cache]))
    assert ("--bind", str(env)) in mounts and ("--ro-bind", str(env)) not in mounts
    assert ("--bind", str(cache)) in mounts and ("--tmpfs", str(cache)) not in mounts
    assert ("--tmpfs", str(cache)) in _mounts(sandbox.argv(["python"], None, runtime=[env]))
