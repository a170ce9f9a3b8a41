"""Containers and their processes: how many run (autoscale within the CPU this agent may
reserve), starting and stopping them, and ending attempts that overrun their timeout or
memory limit or were cancelled. Processes come from a ``Spawn``, so tests can pass fakes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from conveyor import policy
from conveyor.errors import ConveyorError, StoreError
from conveyor.server.agent.code_cache import code_root
from conveyor.server.agent.exits import crash_error, describe_exit, process_exit
from conveyor.server.agent.handle import (
    Attempt,
    DoneHandler,
    KillReason,
    ProcessHandle,
    ProcessSpec,
    ProcessState,
    Spawn,
)
from conveyor.server.agent.limits import over_memory, overdue, reserved_cpu, timeout_outcome
from conveyor.server.agent.log_sink import LogSink
from conveyor.server.agent.loops import Background
from conveyor.server.agent.runtime import Container, StubRuntime, new_container_id
from conveyor.server.agent.sandbox import of_agent
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.store.base import Store
from conveyor.server.store.records import Outcome, StubLoad
from conveyor.tasks import TaskStatus

log = logging.getLogger("conveyor.server.agent")


class Supervisor:
    def __init__(
        self,
        store: Store,
        settings: AgentSettings,
        stubs: dict[str, StubRuntime],
        *,
        spawn: Spawn,
        on_done: DoneHandler,
        report: Callable[[Outcome], None],
        wake: Callable[[StubRuntime], None],
        logs: LogSink | None = None,
    ) -> None:
        self.store = store
        self.logs = logs or LogSink(store, settings.log_limits)
        self.settings = settings
        self.stubs = stubs
        self._spawn = spawn
        self._on_done = on_done
        self._report = report
        self._wake = wake
        self.background = Background()
        self._sandbox = of_agent(settings)
        #: Set on drain: no container starts, no process is replaced.
        self.draining = False
        #: Stubs whose last autoscale failed (logged once until it works again).
        self._scale_failed: set[str] = set()
        #: Why a container's code did not load, by container id, until its start ends.
        self._init_errors: dict[str, dict[str, Any]] = {}

    # -- scaling ---------------------------------------------------------------------------
    async def autoscale(self, now: float) -> None:
        if not self.stubs:
            return
        loads = {load.stub_id: load for load in await self.store.stub_loads(list(self.stubs), now)}
        for stub_id, runtime in list(self.stubs.items()):
            try:
                await self._scale(runtime, loads.get(stub_id), now)
            except StoreError:
                raise  # the store's trouble, not this stub's: the tick logs it and goes on
            except Exception:  # one stub's failure never stops the others' scaling
                if stub_id not in self._scale_failed:  # logged once, not every tick
                    log.exception(
                        "autoscaling %s failed", runtime.stub.name, extra={"action": "stub_broken"}
                    )
                self._scale_failed.add(stub_id)
            else:
                self._scale_failed.discard(stub_id)

    async def _scale(self, runtime: StubRuntime, load: StubLoad | None, now: float) -> None:
        stub_id = runtime.stub.id
        live = [c for c in runtime.containers.values() if not c.stopping]
        if not runtime.stub.active:  # stopped: no keep-warm, no min_containers
            for container in live:
                if not container.busy_processes() and not container.backlog:
                    self.retire(runtime, container)
            return
        in_flight = (load.runnable + load.running) if load else 0
        desired = policy.desired_containers(in_flight, runtime.config.autoscaler)
        if desired > len(live) and now >= runtime.start_not_before:
            total = await self.store.active_containers(stub_id, now)
            for _ in range(max(0, desired - max(len(live), total))):
                if self._spawn_container(runtime, now) is None:
                    break
        elif len(live) > desired:
            keep = runtime.config.keep_warm_seconds
            for container in live[desired:]:
                quiet = not container.busy_processes() and not container.backlog
                if quiet and now - container.last_active >= keep:
                    self.retire(runtime, container)

    def warmup(self, stub_id: str, now: float) -> None:
        runtime = self.stubs.get(stub_id)
        if runtime is None or self.draining or not runtime.stub.active:
            return
        live = [c for c in runtime.containers.values() if not c.stopping]
        if live:
            for container in live:
                container.last_active = now
        else:
            self._spawn_container(runtime, now)

    def _spawn_container(self, runtime: StubRuntime, now: float) -> Container | None:
        """Start a container unless its ``cpu`` does not fit in what is left to reserve."""
        capacity = self.settings.cpu_capacity
        reserved = 0.0 if capacity is None else reserved_cpu(self.stubs.values())
        if capacity is not None and reserved + runtime.config.cpu > capacity + 1e-9:
            if not runtime.cpu_starved:
                log.warning(
                    "not starting another container for %s: it reserves %.2g CPU and %.2g of "
                    "%.2g are reserved",
                    runtime.stub.name,
                    runtime.config.cpu,
                    reserved,
                    capacity,
                    extra={"action": "cpu_exhausted"},
                )
            runtime.cpu_starved = True
            return None
        runtime.cpu_starved = False
        container = Container(new_container_id(runtime.stub.id), runtime.stub.id, last_active=now)
        runtime.containers[container.id] = container
        self.background(self._start_container(runtime, container))
        return container

    # -- container lifecycle ---------------------------------------------------------------
    async def _start_container(self, runtime: StubRuntime, container: Container) -> None:
        try:
            if runtime.code_root is None:
                runtime.code_root = await code_root(
                    self.store, runtime.stub, runtime.config, self.settings.code_cache
                )
            await self.store.register_container(
                container.id, runtime.stub.id, self.settings.agent_id
            )
        except ConveyorError as exc:
            log.error("cannot start a container for %s: %s", runtime.stub.name, exc)
            runtime.containers.pop(container.id, None)
            runtime.start_not_before = time.time() + self.settings.start_retry_s
            return
        log.info(
            "● container %s started for %s v%d",
            container.id,
            runtime.stub.name,
            runtime.stub.version,
            extra={"action": "container_started", "container_id": container.id},
        )
        started = await asyncio.gather(
            *(self._start_process(runtime, container) for _ in range(runtime.config.workers))
        )
        init_error = self._init_errors.pop(container.id, None)
        if not any(started) and init_error is not None:
            await self._fail_waiting(runtime, container, init_error)
        if not any(started) and not container.stopping:
            runtime.start_not_before = time.time() + self.settings.start_retry_s
            await self.stop_container(runtime, container)

    async def _fail_waiting(
        self, runtime: StubRuntime, container: Container, error: dict[str, Any]
    ) -> None:
        """The code did not load (a SyntaxError, an ImportError, ``on_start`` raised): end a
        waiting task with that error, as if the handler had raised it (retried only if its
        type is in ``retry_for``), so the queue says why instead of its tasks waiting to
        their ttl. One task per failed start: the next start may work."""
        with contextlib.suppress(StoreError):
            tasks = await self.store.claim(
                runtime.stub.id, container.id, 1, self.settings.lease_s, time.time()
            )
            wanted = {name.removeprefix("builtins.") for name in runtime.config.retry_for}
            for task in tasks:
                self._report(
                    Outcome(
                        task_id=task.id,
                        fence=task.fence,
                        status=TaskStatus.FAILED,
                        error=orjson.dumps(error).decode(),
                        retryable=str(error.get("type", "")) in wanted,
                    )
                )

    async def _start_process(self, runtime: StubRuntime, container: Container) -> bool:
        assert runtime.code_root is not None
        init = {
            "config": runtime.config.to_dict(),
            "code_root": str(runtime.code_root),
            "stub_id": runtime.stub.id,
            "stub_type": runtime.stub.type,
            "container_id": container.id,
        }
        env = dict(runtime.config.env)
        spec = ProcessSpec(
            container.id, init, env, self._on_done, self.on_exit, self._sandbox, self.logs.add
        )
        process = self._spawn(spec)
        container.processes.append(process)
        ok = await process.start()
        if ok and container.stopping:  # the container was stopped while this one started
            await process.stop()
            return False
        # (a process that failed to load its code may have retired its container already)
        if not ok and process.init_error is not None:
            self._init_errors[container.id] = process.init_error
        if not ok and not self.draining and (process.init_error or not container.stopping):
            log.error(
                "worker for %s failed to start: %s",
                runtime.stub.name,
                _start_failure(process),
                extra={"action": "worker_start_failed"},
            )
        else:
            self._wake(runtime)
        return ok

    def retire(self, runtime: StubRuntime, container: Container) -> None:
        """Stop a container in the background; marked at once, so dispatch no longer feeds it."""
        container.stopping = True
        self.background(self.stop_container(runtime, container))

    async def stop_container(self, runtime: StubRuntime, container: Container) -> None:
        container.stopping = True
        await self._release_backlog(container)
        await asyncio.gather(*(p.stop() for p in list(container.processes)))
        runtime.containers.pop(container.id, None)
        with contextlib.suppress(StoreError):
            await self.store.deregister_container(container.id)
        log.info(
            "○ container %s stopped",
            container.id,
            extra={"action": "container_stopped", "container_id": container.id},
        )

    async def stop_all(self) -> None:
        """The end of a drain: kill what still runs (its task goes back), stop every container."""
        for process in self.processes():
            if process.state is ProcessState.BUSY:
                await process.kill(KillReason.STOP)
        for runtime in list(self.stubs.values()):
            for container in list(runtime.containers.values()):
                await self.stop_container(runtime, container)
        await self.background.settle()

    async def release_stranded(self) -> None:
        """Give back the backlog of a container left without processes: its heartbeat would
        otherwise renew those leases while nothing can ever run them."""
        for runtime in self.stubs.values():
            for container in list(runtime.containers.values()):
                if not container.processes and not container.stopping:
                    await self._release_backlog(container)

    async def _release_backlog(self, container: Container) -> None:
        if container.backlog:
            held = [(t.id, t.fence) for t in container.backlog]
            container.backlog.clear()
            with contextlib.suppress(StoreError):
                await self.store.release(held)

    async def on_exit(self, process: ProcessHandle, returncode: int | None) -> None:
        attempt, reason = process.current, process.kill_reason
        runtime = self.stubs[process.stub_id]
        container = runtime.containers.get(process.container_id)
        if container is not None and process in container.processes:
            container.processes.remove(process)
        if attempt is not None:
            await self._record_exit(runtime, attempt, reason, returncode)
        if container is None or container.stopping or self.draining:
            return
        if reason is not KillReason.STOP and process.init_error is None:
            self.background(self._start_process(runtime, container))
        elif not container.processes:
            # Nothing left to run its tasks, and a live container stops autoscale from
            # starting another: retire it, so a fresh one starts after the retry pause.
            runtime.start_not_before = time.time() + self.settings.start_retry_s
            self.retire(runtime, container)

    async def _record_exit(
        self, runtime: StubRuntime, attempt: Attempt, reason: KillReason | None, rc: int | None
    ) -> None:
        self.logs.end(attempt)
        if reason is KillReason.CANCEL:
            return  # the cancel already wrote CANCELLED
        if reason is KillReason.TIMEOUT:
            return  # _timeout wrote TIMEOUT before killing
        if reason is KillReason.STOP:
            with contextlib.suppress(StoreError):  # else the lease expires and the sweep retries
                await self.store.release([(attempt.task_id, attempt.fence)])
            return
        if reason is KillReason.MEMORY:
            message = f"worker process exceeded the memory limit of {runtime.config.memory} MiB"
        else:
            message = describe_exit(rc)
        log.warning(
            "✗ task %s: %s",
            attempt.task_id,
            message,
            extra={"action": "worker_crashed", "task_id": attempt.task_id},
        )
        self._report(
            Outcome(
                task_id=attempt.task_id,
                fence=attempt.fence,
                status=TaskStatus.FAILED,
                error=orjson.dumps(crash_error(message)).decode(),
                retryable=True,
                exit=process_exit(rc),
            )
        )

    # -- limits and kills ------------------------------------------------------------------
    def enforce_timeouts(self, now: float) -> None:
        for process in overdue(self.processes(), now):
            assert process.current is not None
            process.kill_reason = KillReason.TIMEOUT
            self.background(self._timeout(process, process.current))

    async def _timeout(self, process: ProcessHandle, attempt: Attempt) -> None:
        timeout = self.stubs[process.stub_id].config.timeout
        await process.kill(KillReason.TIMEOUT)  # returns once its last lines are in
        self.logs.end(attempt)
        self._report(timeout_outcome(attempt, timeout))

    def enforce_memory(self) -> None:
        for process in over_memory(self.processes(), self.stubs):
            process.kill_reason = KillReason.MEMORY
            self.background(process.kill(KillReason.MEMORY))

    def kill_task(self, task_id: str) -> bool:
        """Stop a task's attempt (cancelled or taken over): drop it, or kill its process."""
        for runtime in self.stubs.values():
            for container in runtime.containers.values():
                if container.drop_backlog(task_id):
                    return True
        for process in self.processes():
            if process.current is not None and process.current.task_id == task_id:
                if process.kill_reason is None:
                    process.kill_reason = KillReason.CANCEL
                self.background(process.kill(KillReason.CANCEL))
                return True
        return False

    def processes(self) -> Iterator[ProcessHandle]:
        for runtime in self.stubs.values():
            for container in runtime.containers.values():
                yield from list(container.processes)


def _start_failure(process: ProcessHandle) -> str:
    """Why a process did not start, in words: its code's error (type and message, which for
    a SyntaxError names the file and line) before anything else. The ``init_failed`` frame
    can arrive before the process has exited, and that once read "not ready after 120 s"."""
    error = process.init_error
    if error is not None:
        return f"{error.get('type', 'Error')}: {error.get('message', 'its code failed to load')}"
    return process.start_failure
