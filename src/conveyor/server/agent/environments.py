"""Queues' images on this machine (DESIGN A9): one environment per distinct spec, built on first
need, kept and reused by every stub with that spec and across restarts.

Under the agent's ``envs`` folder, for a spec's key ``K``: ``K/`` is the environment, ``K.ready``
says it is complete (written last; its time is the environment's last use), ``K.log`` is the
output of its last build, ``K.failed`` the end of that output when it failed, and ``K.lock`` is
held by whoever builds or removes it. One build per spec: concurrent needs in this process wait
on one build, other agents on this machine wait on the lock, and whoever gets the lock looks
again before building. A failed spec is not built again for ``RETRY_FAILED_S``; its needs fail
at once with the output kept. A build is a background job of its own: only the containers that
need it wait, never other queues.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson

from conveyor.errors import ImageBuildError
from conveyor.server.agent.image_build import Build, Spec, tail
from conveyor.server.agent.sandbox import Sandbox

log = logging.getLogger("conveyor.server.agent")

#: A spec whose build failed is not built again before this many seconds.
RETRY_FAILED_S = 60.0
#: An environment no stub has used for this long is removed.
UNUSED_S = 86400.0
_KEY = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True, slots=True)
class Environment:
    """A built environment: its folder and the folders its interpreter runs from."""

    key: str
    path: Path
    #: Bound read-only into its processes' sandboxes: the environment, then the prefixes of
    #: the interpreter it was made from.
    runtime: tuple[Path, ...]

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"


@dataclass(frozen=True, slots=True)
class BuildState:
    """What this agent knows of a spec's environment, for ``GET /v2/taskqueue/{name}``."""

    state: Literal["building", "ready", "failed"]
    #: Why it failed: the build's last lines.
    message: str | None = None

    def to_dict(self) -> dict[str, str]:
        found: dict[str, str] = {"state": self.state}
        if self.message is not None:
            found["message"] = self.message
        return found


class Environments:
    def __init__(
        self, root: Path, cache: Path, sandbox: Sandbox | None, say: Callable[[str], None]
    ) -> None:
        self.root, self.cache, self._sandbox, self._say = root, cache, sandbox, say
        self._builds: dict[str, asyncio.Task[Environment]] = {}
        self._states: dict[str, BuildState] = {}

    def state(self, key: str) -> BuildState | None:
        return self._states.get(key)

    async def ready(self, spec: Spec, label: str) -> Environment:
        """``spec``'s environment, built if need be; ``ImageBuildError`` if it cannot be."""
        found = self._load(spec.key)
        if found is not None:
            return found
        task = self._builds.get(spec.key)
        if task is None:
            task = self._builds[spec.key] = asyncio.create_task(self._obtain(spec, label))
            task.add_done_callback(lambda _: self._builds.pop(spec.key, None))
        try:
            return await asyncio.shield(task)  # a waiter that gives up leaves it to the others
        except asyncio.CancelledError:
            if task.cancelled():
                raise ImageBuildError("the build was stopped: the agent is stopping") from None
            raise
        except OSError as exc:  # the machine's trouble (a full disk, no uv binary): said so
            log.error("building the image of %s failed: %s", label, exc)
            raise ImageBuildError(f"the agent could not build the image: {exc}") from None

    async def close(self) -> None:
        """Stop the builds under way (the agent drains); their folders go at the next build."""
        for task in list(self._builds.values()):
            task.cancel()
        await asyncio.gather(*self._builds.values(), return_exceptions=True)

    async def _obtain(self, spec: Spec, label: str) -> Environment:
        key = spec.key
        self._refuse_if_failed(key)
        self.root.mkdir(parents=True, exist_ok=True)
        async with self._locked(key):
            found = self._load(key)  # another agent on this machine built it meanwhile
            if found is not None:
                return found
            self._refuse_if_failed(key)
            self._states[key] = BuildState("building")
            self._say(f"◐ building the image of {label} ({spec.summary()})")
            started = time.monotonic()
            path, logfile = self.root / key, self._file(key, "log")
            shutil.rmtree(path, ignore_errors=True)  # what a stopped build left
            logfile.unlink(missing_ok=True)
            try:
                runtime = await Build(spec, path, logfile, self.cache, self._sandbox).run()
            except ImageBuildError as exc:
                shutil.rmtree(path, ignore_errors=True)
                _write(self._file(key, "failed"), exc.message)
                self._states[key] = BuildState("failed", exc.message)
                self._say(f"✗ the image of {label} failed to build: {_cause(exc.message)}")
                raise
            except BaseException:
                self._states.pop(key, None)
                raise
            seconds = time.monotonic() - started
            marker = {"runtime": [str(p) for p in runtime], "seconds": round(seconds, 3)}
            _write(self._file(key, "ready"), orjson.dumps(marker).decode())
            self._file(key, "failed").unlink(missing_ok=True)
            self._states[key] = BuildState("ready")
            self._say(f"✓ the image of {label} built in {seconds:.1f} s")
            return Environment(key, path, tuple(runtime))

    def _load(self, key: str) -> Environment | None:
        """The environment of ``key`` if it is complete; its use is recorded (``K.ready``'s
        time), so the sweep keeps it."""
        marker = self._file(key, "ready")
        try:
            runtime = orjson.loads(marker.read_bytes())["runtime"]
            os.utime(marker)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        paths = tuple(Path(p) for p in runtime)
        if not all(p.is_dir() for p in paths):  # its interpreter was removed: build again
            marker.unlink(missing_ok=True)
            return None
        self._states[key] = BuildState("ready")
        return Environment(key, self.root / key, paths)

    def _refuse_if_failed(self, key: str) -> None:
        failed = self._file(key, "failed")
        with contextlib.suppress(OSError):
            if time.time() - failed.stat().st_mtime < RETRY_FAILED_S:
                message = tail(failed)
                self._states[key] = BuildState("failed", message)
                raise ImageBuildError(message)

    def _file(self, key: str, kind: str) -> Path:
        return self.root / f"{key}.{kind}"

    @contextlib.asynccontextmanager
    async def _locked(self, key: str) -> AsyncIterator[None]:
        """The spec's lock across the processes of this machine, polled: a wait that is
        cancelled (a drain) leaves nothing behind."""
        while True:
            fd = os.open(self._file(key, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(0.2)
                if _same_file(fd, self._file(key, "lock")):  # not one a sweep just removed
                    yield
                    return
            finally:
                os.close(fd)

    # -- removing what no stub uses ------------------------------------------------------
    def sweep(self, in_use: Collection[str], now: float) -> list[str]:
        """Remove the environments (and what is left of failed or stopped builds) unused for
        ``UNUSED_S``, except those of ``in_use``; each one under its lock, skipped when the
        lock is held. Returns the keys removed. Blocking: run it in a thread."""
        removed = []
        keys = {name[:32] for name in _names(self.root) if _KEY.fullmatch(name[:32])}
        for key in sorted(keys - set(in_use)):
            if now - self._last_use(key) < UNUSED_S:
                continue
            lock = self._file(key, "lock")
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            try:
                if now - self._last_use(key) < UNUSED_S or not _same_file(fd, lock):
                    continue
                self._file(key, "ready").unlink(missing_ok=True)  # first: never half-used
                shutil.rmtree(self.root / key, ignore_errors=True)
                for kind in ("log", "failed", "lock"):
                    self._file(key, kind).unlink(missing_ok=True)
                self._states.pop(key, None)
                removed.append(key)
            finally:
                os.close(fd)
        return removed

    def touch(self, keys: Collection[str]) -> None:
        """Record that ``keys`` are in use now (by containers that run for long)."""
        for key in keys:
            with contextlib.suppress(OSError):
                os.utime(self._file(key, "ready"))

    def _last_use(self, key: str) -> float:
        times = [0.0]
        for path in (self._file(key, k) for k in ("ready", "log", "failed")):
            with contextlib.suppress(OSError):
                times.append(path.stat().st_mtime)
        return max(times)


def _cause(output: str) -> str:
    """The line of a failed build's output that says why: uv's last ``cause:`` or
    ``error:``, else the step that failed."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    said = [line for line in lines if line.startswith(("cause:", "error:"))]
    return (said or lines or ["no output"])[-1]


def _names(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except OSError:
        return False


def _write(path: Path, text: str) -> None:
    """Write ``path`` whole or not at all."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.write_text(text)
    os.replace(staging, path)
