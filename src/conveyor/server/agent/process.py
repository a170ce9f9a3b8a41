"""One runner process of a container, seen from the agent: spawn, feed, watch, kill."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from typing import Any

import psutil

from conveyor.runner import wire
from conveyor.server.agent import sandbox
from conveyor.server.agent.environments import Environment
from conveyor.server.agent.exits import describe_exit
from conveyor.server.agent.handle import Attempt, KillReason, ProcessSpec, ProcessState
from conveyor.server.secret_key import ENV_SECRET_KEY
from conveyor.server.store.records import TaskRecord

log = logging.getLogger("conveyor.server.agent")

#: Seconds between SIGTERM and SIGKILL when a process is stopped.
KILL_GRACE_S = 0.5
#: Seconds a process may take to import its code and run ``on_start``.
START_TIMEOUT_S = 120.0


class RunnerProcess:
    """The real ``ProcessHandle``: ``python -m conveyor.runner.main`` behind a pipe."""

    def __init__(self, spec: ProcessSpec) -> None:
        self.container_id = spec.container_id
        self.stub_id = str(spec.init["stub_id"])
        self._init = dict(spec.init)
        self._env = spec.env
        self._sandbox = spec.sandbox
        self._environment = spec.environment
        #: The sandboxed processes (the runner and what it spawned), found on the first read.
        self._inside: psutil.Process | None = None
        self._on_done = spec.on_done
        self._on_exit = spec.on_exit
        self._on_log = spec.on_log
        #: Set once every frame the process wrote has been handled (its pipe is at its end).
        self._drained = asyncio.Event()
        self.state = ProcessState.STARTING
        self.current: Attempt | None = None
        self.kill_reason: KillReason | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.init_error: dict[str, Any] | None = None
        #: The process said ``ready`` (it may be busy or dead since).
        self.ready = False
        #: Why ``start`` returned False, in words.
        self.start_failure = ""
        self._ready = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def rss(self) -> int | None:
        """The runner's resident memory; sandboxed, that of every process in the sandbox
        (the runner and what its handler spawned), bubblewrap's own two left out."""
        pid = self.pid
        if pid is None:
            return None
        try:
            if self._sandbox is None:
                return int(psutil.Process(pid).memory_info().rss)
            if self._inside is None:  # bwrap (pid) → bwrap's init in the namespace → runner
                inits = _children(pid)
                if not inits:
                    return None
                self._inside = psutil.Process(inits[0])
            total = 0
            for child in _descendants(self._inside.pid):
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += psutil.Process(child).memory_info().rss
            return total or None
        except psutil.Error:
            return None

    async def start(self) -> bool:
        """Spawn the process and wait until it is ready. False if it could not start."""
        image = self._environment
        python = sys.executable if image is None else str(image.python)
        command = [python, "-m", "conveyor.runner.main"]
        options: int | None = None  # the pipe bwrap reads its options from
        if self._sandbox is None:  # one trust domain: the agent's environment, its user
            env = {
                **_outside(image),
                **self._env,
                "PYTHONUNBUFFERED": "1",
                wire.AGENT_PID_ENV: str(os.getpid()),  # so it can tell it was orphaned at birth
            }
        else:
            # Its parent is bwrap's init, not this agent: no AGENT_PID_ENV (the runner checks
            # its parent seen at start; bwrap dies with this agent, its namespace with it).
            code = os.path.realpath(str(self._init["code_root"]))
            self._init["code_root"] = code  # the path it is bound at inside
            runtime = None if image is None else image.runtime
            argv = self._sandbox.argv(command, code, runtime=runtime)
            command, options = sandbox.through_pipe(argv)
            env = sandbox.environment(self._env, None if image is None else image.python.parent)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                limit=2**20,
                pass_fds=() if options is None else (options,),
            )
        finally:
            if options is not None:
                os.close(options)
        self._reader = asyncio.create_task(self._read_loop())
        self._send({"op": "init", **self._init})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), START_TIMEOUT_S)
        # Not ``state is IDLE``: once ready, the agent may hand it a task before this resumes
        # (that check made a busy process look unstarted, and killed it with its task).
        if self.ready:
            return True
        # The code's own error first: it arrives before the process has exited, and taking
        # that window for "still importing" reported a SyntaxError as a start-up timeout.
        if self.init_error is not None:
            self.start_failure = str(self.init_error.get("message", "its code failed to load"))
        elif self.proc.returncode is None:  # still importing after START_TIMEOUT_S
            self.start_failure = f"worker process was not ready after {START_TIMEOUT_S:.0f} s"
            await self.kill(KillReason.STOP)
        else:
            self.start_failure = describe_exit(self.proc.returncode) + " while starting"
        # A process that died while starting is reported through ``on_exit`` like any crash,
        # so the container replaces it.
        return False

    def run(self, task: TaskRecord, now: float) -> None:
        assert self.state is ProcessState.IDLE
        deadline = None if task.timeout_s < 0 else now + task.timeout_s
        self.current = Attempt(task.id, task.fence, task.attempt, deadline, now)
        self.state = ProcessState.BUSY
        self._send(
            {
                "op": "run",
                "task_id": task.id,
                "fence": task.fence,
                "attempt": task.attempt,
                "payload": task.payload,
                "callback_url": task.callback_url,
                "timeout": task.timeout_s,
            }
        )

    async def kill(self, reason: KillReason) -> None:
        """SIGTERM, a short grace, then SIGKILL; returns once the lines it wrote before are
        handled. The exit is reported through ``on_exit``."""
        if self.kill_reason is None:
            self.kill_reason = reason
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), KILL_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        # (a grandchild holding the pipe open must not hold this up for long)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained.wait(), KILL_GRACE_S)

    async def stop(self) -> None:
        """Ask an idle process to exit; kill it if it does not."""
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self.kill_reason = self.kill_reason or KillReason.STOP
        self._send({"op": "stop"})
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            await self.kill(KillReason.STOP)

    def _send(self, message: dict[str, Any]) -> None:
        """Write a frame; to a process that just died, write nothing: its death is reported
        by the read loop through ``on_exit``, and raising here would fail a caller that did
        nothing wrong (another process's result feeding this one, a container's start-up)."""
        assert self.proc is not None and self.proc.stdin is not None
        stdin = self.proc.stdin
        if stdin.is_closing():
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(wire.encode(message))

    async def _read_loop(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        stdout = self.proc.stdout
        try:
            while True:
                header = await stdout.readexactly(4)
                message = wire.decode(await stdout.readexactly(wire.decode_length(header)))
                try:
                    await self._handle(message)
                except Exception:  # a bug in the agent's handlers must not deafen this process
                    log.exception("handling %r from a worker process failed", message.get("op"))
        except (asyncio.IncompleteReadError, ConnectionResetError, ValueError):
            pass
        self._drained.set()
        returncode = await self.proc.wait()
        if self._sandbox is not None and 128 < returncode < 128 + signal.NSIG:
            returncode = 128 - returncode  # bwrap exits 128 + N when the runner got signal N
        self.state = ProcessState.DEAD
        self._ready.set()
        await self._on_exit(self, returncode)

    async def _handle(self, message: dict[str, Any]) -> None:
        op = message.get("op")
        if op == "ready":
            self.ready = True
            self.state = ProcessState.IDLE
            self._ready.set()
        elif op == "init_failed":
            self.init_error = message.get("error")
            self._ready.set()
        elif op == "started":
            if self.current is not None and self.current.task_id == message.get("task_id"):
                self.current.started_at = float(message.get("at", time.time()))
        elif op == "log":
            lines = message.get("lines")
            if self._on_log is None or not isinstance(lines, list):
                return
            # Only the attempt this agent handed over may be named (the frame is the
            # handler's process's word): anything else is the container's own.
            current = self.current
            named = current is not None and current.task_id == message.get("task_id")
            self._on_log(self, current if named else None, lines)
        elif op == "done":
            current = self.current
            if current is None or current.task_id != message.get("task_id"):
                return
            if self.kill_reason not in (None, KillReason.STOP):
                return  # a killed attempt's last words are not recorded
            # (a graceful stop lets the running task finish, and its result counts)
            self.current = None
            self.state = ProcessState.IDLE
            await self._on_done(self, current, message)


def _outside(image: Environment | None) -> dict[str, str]:
    """An unsandboxed process's base environment: the agent's less the key of every
    workspace's secrets (its own come in its ``env``), and for an image, without what would
    put the agent's packages back on its path."""
    env = {k: v for k, v in os.environ.items() if k != ENV_SECRET_KEY}
    if image is None:
        return env
    env = {k: v for k, v in env.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["VIRTUAL_ENV"] = str(image.path)
    env["PATH"] = f"{image.python.parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _children(pid: int) -> list[int]:
    """The pids of a process's children: from ``/proc`` (Linux, no scan of every process),
    else psutil."""
    try:
        found: list[int] = []
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as children:
                found += [int(child) for child in children.read().split()]
        return found
    except OSError:
        with contextlib.suppress(psutil.Error):
            return [child.pid for child in psutil.Process(pid).children()]
        return []


def _descendants(pid: int) -> list[int]:
    found, todo = [], _children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo += _children(child)
    return found
