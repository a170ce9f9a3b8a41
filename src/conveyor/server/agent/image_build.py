"""One build of a queue's image (DESIGN A9): a virtual environment made by uv, its output kept.

The steps: ``uv venv`` with the image's Python; ``uv pip install`` of its packages with what
conveyor's worker side needs (``WORKER_PACKAGES``, at this agent's versions); a copy of
conveyor's worker side (never the server, the CLI or the direct producer) into its
site-packages; the image's
``commands``; a check that the runner imports there.

``uv venv`` runs as the agent: its only input from the tenant is a checked version number.
Everything else runs in the agent's sandbox when it has one. ``uv pip install`` reads what the
tenant wrote (a requirements file can name a file to read, and uv would quote it back in its
error), so it sees only what a handler sees plus the environment and uv's cache (writable),
the local indexes and uv's own binary, with none of the agent's variables; and it installs
wheels only (``--no-build``): a source distribution's build is arbitrary code. What runs the
environment's Python (a package's ``.pth`` file runs at every start) and the ``commands`` run
there too, with the environment as the only writable folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import importlib.metadata
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

import conveyor
from conveyor.errors import ImageBuildError
from conveyor.image import Image
from conveyor.server.agent import sandbox as sandboxing
from conveyor.server.agent.package_index import local_sources, uv_variables

#: What conveyor's worker side imports beyond the standard library, at this agent's versions:
#: installed into every environment (a tenant's pin of another version fails the build).
WORKER_PACKAGES = {name: importlib.metadata.version(name) for name in ("orjson", "cronsim")}
#: A build that takes longer is stopped and counts as failed.
BUILD_TIMEOUT_S = 1800.0
#: The part of a failed build's output a task's error carries.
TAIL_LINES = 50
#: Largest requirements file read.
REQUIREMENTS_MAX = 1 << 20
#: Parts of the conveyor package an environment does not get: they need the server's
#: dependencies, and a handler's process never imports them.
SERVER_SIDE = frozenset({"server", "cli", "direct", "__pycache__"})
#: What the probe of the base interpreter prints: the folders it runs from.
_PREFIXES = "import sys; print(sys.base_prefix); print(sys.base_exec_prefix)"
_CHECK = (
    "import compileall, sys; ok = compileall.compile_dir(sys.argv[1], quiet=1); "
    "import conveyor.runner.main; sys.exit(0 if ok else 1)"
)
#: The agent's variables uv may need to reach an index (proxies, certificates); the rest of
#: its environment (a token, the store's URL) never reaches a build.
_NETWORK_VARIABLES = (
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
    "no_proxy", "all_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Spec:
    """What an environment is built from; environments are shared by ``key``."""

    image: Image
    #: The requirements file's content (read from the stub's code folder), if it names one.
    requirements: str | None
    #: The interpreter uv is asked for: the image's version, or this agent's Python.
    python: str
    key: str

    def summary(self) -> str:
        parts = list(self.image.python_packages)
        if self.image.requirements:
            parts.append(f"-r {self.image.requirements}")
        if self.image.python_version:
            parts.append(f"Python {self.image.python_version}")
        if self.image.commands:
            parts.append(f"{len(self.image.commands)} commands")
        return ", ".join(parts) or "no packages"


def spec_of(image: Image, code_root: Path) -> Spec:
    """The spec of ``image`` for a stub whose code is in ``code_root``."""
    requirements = None
    if image.requirements is not None:
        root = code_root.resolve()
        path = (root / image.requirements).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise ImageBuildError(
                f"image.requirements: no file {image.requirements!r} in the code folder"
            )
        with path.open("rb") as file:
            data = file.read(REQUIREMENTS_MAX + 1)
        if len(data) > REQUIREMENTS_MAX:
            raise ImageBuildError(f"image.requirements: {image.requirements} is over 1 MiB")
        requirements = data.decode("utf-8", errors="replace")
    for text in (*image.python_packages, requirements or ""):
        if "${" in text:  # uv would put a variable of the build's in, and maybe in its error
            raise ImageBuildError("image: requirements cannot name environment variables (${…})")
    if image.python_version is not None:
        python, interpreter = image.python_version, image.python_version
    else:
        python = sys.executable  # uv makes the environment from its base interpreter
        interpreter = f"{platform.python_version()} {os.path.realpath(sys.base_prefix)}"
    identity = {
        "image": image.to_dict(),
        "requirements": requirements,
        "python": interpreter,
        "worker": worker_side_digest(),
        "packages": WORKER_PACKAGES,
    }
    key = hashlib.sha256(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32]
    return Spec(image, requirements, python, key)


@functools.cache
def worker_side_digest() -> str:
    """A digest of the conveyor files an environment gets: a new conveyor, a new environment
    (the agent and its worker processes speak one protocol)."""
    digest = hashlib.sha256()
    for path in _worker_side_files():
        digest.update(str(path.relative_to(_package())).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _package() -> Path:
    return Path(conveyor.__file__).parent


def _worker_side_files() -> list[Path]:
    root = _package()
    found = []
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        if path.is_file() and parts[0] not in SERVER_SIDE and "__pycache__" not in parts:
            found.append(path)
    return found


class Build:
    """Builds ``spec``'s environment in the empty folder ``path``, its output appended to
    ``log``. ``run`` returns the folders its interpreter needs beside it (bound read-only
    into its sandboxes), or raises ``ImageBuildError`` with the output's last lines."""

    def __init__(
        self, spec: Spec, path: Path, log: Path, cache: Path, sandbox: sandboxing.Sandbox | None
    ) -> None:
        self.spec, self.path, self.log, self.cache, self.sandbox = spec, path, log, cache, sandbox
        self.python = path / "bin" / "python"

    async def run(self) -> list[Path]:
        started = time.monotonic()
        try:
            async with asyncio.timeout(BUILD_TIMEOUT_S):
                runtime = await self._steps()
        except TimeoutError:
            self._write(f"✗ the build took longer than {BUILD_TIMEOUT_S:.0f} s and was stopped\n")
            raise ImageBuildError(self.tail()) from None
        except ImageBuildError as exc:
            self._write(f"✗ {exc.message}\n")
            raise ImageBuildError(self.tail()) from None
        self._write(f"✓ built in {time.monotonic() - started:.1f} s\n")
        return runtime

    async def _steps(self) -> list[Path]:
        spec = self.spec
        self._write(f"# image {spec.key}: {orjson.dumps(spec.image.to_dict()).decode()}\n")
        uv, env = _uv_binary(), self._uv_env()
        # (the agent's PATH and HOME: where uv finds the machine's Pythons)
        outside = {**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                   "HOME": os.environ.get("HOME", "/tmp")}  # fmt: skip
        await self._step("uv venv", [uv, "venv", "--no-project", "--python", spec.python,
                                     str(self.path)], outside)  # fmt: skip
        runtime = await self._base_folders()
        install = [uv, "pip", "install", "--python", str(self.python), "--compile-bytecode"]
        if self.sandbox is not None:
            install.append("--no-build")  # a source distribution's build runs its code
        install += [f"{name}=={version}" for name, version in WORKER_PACKAGES.items()]
        if spec.requirements is not None:
            copy = self.path / "conveyor-requirements.txt"  # exactly the content hashed
            copy.write_text(spec.requirements)
            install += ["-r", str(copy)]
        self.cache.mkdir(parents=True, exist_ok=True)
        seen = [*runtime, Path(uv), *local_sources(env)]
        await self._contained("uv pip install", [*install, "--", *spec.image.python_packages],
                              env, seen, [self.path, self.cache])  # fmt: skip
        site = self._site_packages()
        await asyncio.to_thread(_copy_worker_side, site / "conveyor")
        inside = {**sandboxing.environment({}, self.path / "bin"), "VIRTUAL_ENV": str(self.path)}
        for command in spec.image.commands:
            await self._contained("command", ["/bin/sh", "-c", command], inside, runtime,
                                  [self.path])  # fmt: skip
        check = [str(self.python), "-c", _CHECK, str(site / "conveyor")]
        await self._contained("worker check", check, inside, runtime, [self.path])
        return [self.path, *runtime]

    def _uv_env(self) -> dict[str, str]:
        """uv's whole environment: no variable of the agent's but the network's and uv's."""
        env = {k: v for k, v in os.environ.items() if k in _NETWORK_VARIABLES or k[:3] == "UV_"}
        env.update(uv_variables(os.environ))
        # Copies, not hard links: a command that changes a package's file must not change
        # the cache's copy, nor other environments'. A Python not on this machine fails
        # (nothing downloaded).
        env.update(
            PATH="/usr/local/bin:/usr/bin:/bin",
            HOME=sandboxing.TMP,
            LANG="C.UTF-8",
            UV_CACHE_DIR=str(self.cache),
            UV_LINK_MODE="copy",
            UV_PYTHON_DOWNLOADS="never",
            UV_NO_PROGRESS="1",
        )
        return env

    async def _base_folders(self) -> list[Path]:
        """The prefixes of the interpreter the environment was made from, asked of that
        interpreter itself, isolated (no site, so none of the packages' code runs)."""
        base = os.path.realpath(self.python)
        done = await asyncio.create_subprocess_exec(
            base, "-I", "-S", "-c", _PREFIXES, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        out, _ = await done.communicate()
        if done.returncode != 0:
            self._write(out.decode(errors="replace"))
            raise ImageBuildError(f"the interpreter {base} did not run")
        folders = [*out.decode().split(), os.path.dirname(base)]
        return [Path(f) for f in dict.fromkeys(os.path.realpath(f) for f in folders)]

    def _site_packages(self) -> Path:
        found = sorted(self.path.glob("lib/python3*/site-packages"))
        if len(found) != 1:
            raise ImageBuildError("the environment has no single site-packages folder")
        return found[0]

    async def _contained(
        self,
        what: str,
        argv: list[str],
        env: Mapping[str, str],
        seen: Sequence[Path],
        writable: Sequence[Path],
    ) -> None:
        """Run ``argv`` in the environment's folder, in the agent's sandbox (unless it has
        none) where it sees ``seen`` read-only and may write ``writable`` only."""
        if self.sandbox is None:
            await self._step(what, argv, env, cwd=self.path)
            return
        full = self.sandbox.argv(argv, None, runtime=seen, writable=writable,
                                 chdir=str(self.path))  # fmt: skip
        command, fd = sandboxing.through_pipe(full)
        try:
            await self._step(what, command, env, shown=argv, pass_fds=(fd,))
        finally:
            os.close(fd)

    async def _step(
        self,
        what: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        cwd: Path | None = None,
        shown: Sequence[str] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self._write(f"$ {shlex.join(shown or argv)}\n")
        with self.log.open("ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                env=dict(env), cwd=cwd or self.path.parent, pass_fds=pass_fds,
                start_new_session=True,  # so a stopped build takes its children with it
            )  # fmt: skip
        try:
            code = await proc.wait()
        finally:
            if proc.returncode is None:  # stopped (drain, timeout): the whole group goes
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        if code != 0:
            raise ImageBuildError(f"{what} failed with exit code {code}")

    def _write(self, text: str) -> None:
        with self.log.open("a", encoding="utf-8") as out:
            out.write(text)

    def tail(self) -> str:
        return tail(self.log)


def tail(log: Path, lines: int = TAIL_LINES) -> str:
    with contextlib.suppress(OSError):
        with log.open("rb") as file:
            file.seek(max(0, file.seek(0, os.SEEK_END) - 64 * 1024))
            text = file.read().decode("utf-8", errors="replace")
        return "\n".join(text.rstrip("\n").splitlines()[-lines:])
    return "the build left no output"


@functools.cache
def _uv_binary() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _copy_worker_side(target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    for path in _worker_side_files():
        dest = target / path.relative_to(_package())
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest)
