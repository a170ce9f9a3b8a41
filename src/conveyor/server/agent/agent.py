"""The agent: one per machine. Scales containers with queue depth, claims and dispatches
tasks, writes outcomes back in batches, and enforces timeouts, cancels and memory limits.

Periodic work is one ``tick(now)`` so tests can step it; dispatch and outcome writing are
event-driven so a task is picked up within milliseconds of its enqueue.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil

from conveyor import policy
from conveyor.errors import ConveyorError, StoreError
from conveyor.server.agent.code_cache import code_root
from conveyor.server.agent.exits import crash_error, describe_exit
from conveyor.server.agent.process import Attempt, KillReason, WorkerProcess, WorkerState
from conveyor.server.agent.runtime import Container, StubRuntime, new_container_id
from conveyor.server.store.base import Store
from conveyor.server.store.records import DEPLOYMENT, Event, Outcome, Stub, StubType
from conveyor.tasks import TaskStatus

log = logging.getLogger("conveyor.server.agent")


@dataclass(frozen=True)
class AgentSettings:
    #: A lease not renewed for this long lets others retry the task (lost-agent detection).
    lease_s: float = 10.0
    heartbeat_s: float = 2.0
    sweep_s: float = 1.0
    #: Claim attempts without a notification (SQLite shared by several processes).
    poll_s: float = 0.5
    stubs_refresh_s: float = 2.0
    memory_check_s: float = 0.25
    tick_s: float = 0.1
    #: On SIGTERM, running tasks get this long to finish before they are released.
    drain_grace_s: float = 10.0
    #: Wait after a container failed to start before trying again.
    start_retry_s: float = 5.0
    #: CPUs this agent may reserve for containers (each reserves its queue's ``cpu``);
    #: None: no limit (``conveyor worker --cpus`` sets it).
    cpu_capacity: float | None = None
    #: Short tasks get a prefetched backlog per container, sized to be worked off within this.
    prefetch_budget_s: float = 0.05
    code_cache: Path = Path(".conveyor/code")
    #: Run every stub of these types (all workspaces) …
    stub_types: tuple[StubType, ...] = (DEPLOYMENT,)
    #: … and these stubs (``conveyor serve``'s own); tests pass ``stub_types=()`` for these only.
    stub_ids: frozenset[str] = frozenset()
    agent_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
    )


class Agent:
    def __init__(self, store: Store, settings: AgentSettings | None = None) -> None:
        self.store = store
        self.settings = settings or AgentSettings()
        self.stubs: dict[str, StubRuntime] = {}
        self._outcomes: asyncio.Queue[Outcome] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._draining = False
        self._next: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- running ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain: no new claims, running tasks get
        ``drain_grace_s`` to finish, the rest go back to the queue."""
        subscription = self.store.subscribe()
        loops = [
            asyncio.create_task(self._event_loop(subscription)),
            asyncio.create_task(self._dispatch_loop()),
            asyncio.create_task(self._outcome_loop()),
        ]
        try:
            while not stop.is_set():
                async with self._survive("tick"):
                    await self.tick(time.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.tick_s)
            await self.drain()
        finally:
            subscription.close()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self._flush_outcomes()

    async def tick(self, now: float) -> None:
        """One step of periodic work; each chore runs when its interval has passed."""
        s = self.settings
        if self._due("stubs", now, s.stubs_refresh_s):
            await self.refresh_stubs()
        self._enforce_timeouts(now)
        await self._release_stranded()
        if self._due("memory", now, s.memory_check_s):
            self._enforce_memory()
        if self._due("heartbeat", now, s.heartbeat_s):
            await self._heartbeat(now)
        if self._due("sweep", now, s.sweep_s):
            await self.store.sweep(now)
        if self._due("poll", now, s.poll_s):
            for runtime in self.stubs.values():
                runtime.maybe_work = True
            self._wake.set()
        if not self._draining:
            await self._autoscale(now)

    def _due(self, chore: str, now: float, every: float) -> bool:
        if now < self._next.get(chore, 0.0):
            return False
        self._next[chore] = now + every
        return True

    async def refresh_stubs(self) -> None:
        s = self.settings
        if s.stub_ids:
            stubs = [
                st
                for st in await self.store.list_stubs()
                if st.id in s.stub_ids or st.type in s.stub_types
            ]
        else:
            stubs = await self.store.list_stubs(types=s.stub_types) if s.stub_types else []
        for stub in stubs:
            runtime = self.stubs.get(stub.id)
            if runtime is None or runtime.stub.config_version != stub.config_version:
                self._adopt(stub)

    def _adopt(self, stub: Stub) -> StubRuntime:
        try:
            config = stub.queue_config
        except ConveyorError as exc:
            log.error("stub %s has an invalid config: %s", stub.id, exc)
            raise
        runtime = self.stubs.get(stub.id)
        if runtime is None:
            runtime = self.stubs[stub.id] = StubRuntime(stub, config)
        else:  # a serve stub whose config changed: retire its containers, start new ones
            runtime.stub, runtime.config = stub, config
            for container in list(runtime.containers.values()):
                self._background(self._stop_container(runtime, container))
        return runtime

    # -- scaling ---------------------------------------------------------------------------
    async def _autoscale(self, now: float) -> None:
        if not self.stubs:
            return
        loads = {load.stub_id: load for load in await self.store.stub_loads(list(self.stubs), now)}
        for stub_id, runtime in self.stubs.items():
            load = loads.get(stub_id)
            in_flight = (load.runnable + load.running) if load else 0
            desired = policy.desired_containers(in_flight, runtime.config.autoscaler)
            live = [c for c in runtime.containers.values() if not c.stopping]
            if desired > len(live) and now >= runtime.start_not_before:
                total = await self.store.active_containers(stub_id, now)
                for _ in range(max(0, desired - max(len(live), total))):
                    if self._spawn_container(runtime, now) is None:
                        break
            elif len(live) > desired:
                keep = runtime.config.keep_warm_seconds
                for container in live[desired:]:
                    quiet = not container.busy_workers() and not container.backlog
                    if quiet and now - container.last_active >= keep:
                        container.stopping = True  # at once: dispatch must not feed it now
                        self._background(self._stop_container(runtime, container))

    def _spawn_container(self, runtime: StubRuntime, now: float) -> Container | None:
        """Start a container unless its ``cpu`` does not fit in what is left to reserve."""
        capacity = self.settings.cpu_capacity
        reserved = (
            0.0
            if capacity is None
            else sum(
                r.config.cpu * sum(1 for c in r.containers.values() if not c.stopping)
                for r in self.stubs.values()
            )
        )
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
        self._background(self._start_container(runtime, container))
        return container

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
            *(self._start_worker(runtime, container) for _ in range(runtime.config.workers))
        )
        if not any(started) and not container.stopping:
            runtime.start_not_before = time.time() + self.settings.start_retry_s
            await self._stop_container(runtime, container)

    async def _start_worker(self, runtime: StubRuntime, container: Container) -> bool:
        assert runtime.code_root is not None
        worker = WorkerProcess(
            container_id=container.id,
            init={
                "config": runtime.config.to_dict(),
                "code_root": str(runtime.code_root),
                "stub_id": runtime.stub.id,
                "stub_type": runtime.stub.type,
                "container_id": container.id,
            },
            env=dict(runtime.config.env),
            on_done=self._on_done,
            on_exit=self._on_exit,
        )
        container.workers.append(worker)
        ok = await worker.start()
        if ok and container.stopping:  # the container was stopped while this one started
            await worker.stop()
            return False
        # (a worker that failed to load its code may have retired its container already)
        if not ok and not self._draining and (worker.init_error or not container.stopping):
            log.error(
                "worker for %s failed to start: %s",
                runtime.stub.name,
                worker.start_failure,
                extra={"action": "worker_start_failed"},
            )
        else:
            runtime.maybe_work = True
            self._wake.set()
        return ok

    async def _stop_container(self, runtime: StubRuntime, container: Container) -> None:
        container.stopping = True
        if container.backlog:
            held = [(t.id, t.fence) for t in container.backlog]
            container.backlog.clear()
            with contextlib.suppress(StoreError):
                await self.store.release(held)
        await asyncio.gather(*(w.stop() for w in list(container.workers)))
        runtime.containers.pop(container.id, None)
        with contextlib.suppress(StoreError):
            await self.store.deregister_container(container.id)
        log.info(
            "○ container %s stopped",
            container.id,
            extra={"action": "container_stopped", "container_id": container.id},
        )

    def warmup(self, stub_id: str, now: float) -> None:
        runtime = self.stubs.get(stub_id)
        if runtime is None or self._draining:
            return
        live = [c for c in runtime.containers.values() if not c.stopping]
        if live:
            for container in live:
                container.last_active = now
        else:
            self._spawn_container(runtime, now)

    # -- dispatch --------------------------------------------------------------------------
    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._draining:
                continue
            async with self._survive("dispatch", then=self._wake.set):
                await self.dispatch(time.time())

    async def dispatch(self, now: float) -> int:
        """Feed every container's backlog to its idle workers, then claim tasks for the idle
        workers (plus a backlog for short tasks) of stubs that may have work; return how many
        were claimed."""
        claimed = 0
        for runtime in list(self.stubs.values()):
            containers = [c for c in runtime.containers.values() if not c.stopping]
            for container in containers:  # before any claim: a short claim ends the round
                self._feed(container, now)
            if not runtime.maybe_work:
                continue
            for container in containers:
                idle = len(container.idle_workers())
                depth = runtime.prefetch(len(container.workers), self.settings.prefetch_budget_s)
                # Refill the backlog only once it is half used: fewer, larger claims.
                refill = (
                    depth - len(container.backlog) if len(container.backlog) <= depth // 2 else 0
                )
                want = idle + refill
                if want <= 0 or not container.workers:
                    continue
                tasks = await self.store.claim(
                    runtime.stub.id, container.id, want, self.settings.lease_s, now
                )
                claimed += len(tasks)
                if container.stopping or container.id not in runtime.containers:
                    # Stopped while the claim was in flight: give the tasks straight back.
                    await self.store.release([(t.id, t.fence) for t in tasks])
                    continue
                container.backlog.extend(tasks)
                self._feed(container, now)
                if len(tasks) < want:
                    runtime.maybe_work = False
                    break
        return claimed

    def _feed(self, container: Container, now: float) -> None:
        """Give backlog tasks to idle workers."""
        for worker in container.idle_workers():
            if not container.backlog:
                return
            worker.run(container.backlog.popleft(), now)
            container.last_active = now

    async def _on_done(self, worker: WorkerProcess, attempt: Attempt, msg: dict[str, Any]) -> None:
        status = TaskStatus.COMPLETE if msg.get("status") == "COMPLETE" else TaskStatus.FAILED
        error = msg.get("error")
        outputs = [(o["name"], _b64(o["data"])) for o in msg.get("outputs") or ()]
        self._outcomes.put_nowait(
            Outcome(
                task_id=attempt.task_id,
                fence=attempt.fence,
                status=status,
                result=msg.get("result"),
                error=orjson.dumps(error).decode() if error else None,
                retryable=bool(msg.get("retryable")),
                outputs=outputs,
            )
        )
        runtime = self._stub_of(worker)
        now = time.time()
        runtime.observe(now - attempt.dispatched_at)
        container = runtime.containers.get(worker.container_id)
        if container is not None:
            container.last_active = now
            self._feed(container, now)
        runtime.maybe_work = True
        self._wake.set()

    async def _on_exit(self, worker: WorkerProcess, returncode: int | None) -> None:
        attempt, reason = worker.current, worker.kill_reason
        runtime = self._stub_of(worker)
        container = runtime.containers.get(worker.container_id)
        if container is not None and worker in container.workers:
            container.workers.remove(worker)
        if attempt is not None:
            await self._record_exit(runtime, attempt, reason, returncode)
        if container is None or container.stopping or self._draining:
            return
        if reason is not KillReason.STOP and worker.init_error is None:
            self._background(self._start_worker(runtime, container))
        elif not container.workers:
            # Nothing left to run its tasks, and a live container stops autoscale from
            # starting another: retire it, so a fresh one starts after the retry pause.
            runtime.start_not_before = time.time() + self.settings.start_retry_s
            container.stopping = True
            self._background(self._stop_container(runtime, container))

    async def _record_exit(
        self, runtime: StubRuntime, attempt: Attempt, reason: KillReason | None, rc: int | None
    ) -> None:
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
        self._outcomes.put_nowait(
            Outcome(
                task_id=attempt.task_id,
                fence=attempt.fence,
                status=TaskStatus.FAILED,
                error=orjson.dumps(crash_error(message)).decode(),
                retryable=True,
            )
        )

    async def _outcome_loop(self) -> None:
        while True:
            first = await self._outcomes.get()
            batch = [first]
            while not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            async with self._survive("outcome writing"):  # lost outcomes: leases expire, retry
                await self._write(batch)

    async def _flush_outcomes(self) -> None:
        batch: list[Outcome] = []
        while not self._outcomes.empty():
            batch.append(self._outcomes.get_nowait())
        if batch:
            await self._write(batch)

    async def _write(self, batch: list[Outcome]) -> None:
        for delay in (0.1, 0.5, 1.0, 2.0, 5.0, 10.0):
            try:
                await self.store.finish(batch)
                return
            except StoreError as exc:
                log.warning(
                    "writing %d outcomes failed (%s); retrying",
                    len(batch),
                    exc,
                    extra={"action": "finish_failed"},
                )
                await asyncio.sleep(delay)
        log.error(
            "dropping %d outcomes after repeated store errors; their leases will "
            "expire and the sweep will retry them",
            len(batch),
        )

    # -- enforcement -----------------------------------------------------------------------
    def _enforce_timeouts(self, now: float) -> None:
        for worker in self._workers():
            current = worker.current
            if (
                current is not None
                and current.deadline is not None
                and now >= current.deadline
                and worker.kill_reason is None
            ):
                worker.kill_reason = KillReason.TIMEOUT
                self._background(self._timeout(worker, current))

    async def _timeout(self, worker: WorkerProcess, attempt: Attempt) -> None:
        timeout = self._stub_of(worker).config.timeout
        await worker.kill(KillReason.TIMEOUT)
        error = {
            "type": "TimeoutError",
            "message": f"attempt exceeded the timeout of {timeout} s",
            "traceback": "",
        }
        self._outcomes.put_nowait(
            Outcome(
                attempt.task_id,
                attempt.fence,
                TaskStatus.TIMEOUT,
                error=orjson.dumps(error).decode(),
            )
        )

    async def _release_stranded(self) -> None:
        """Give back the backlog of a container left without worker processes: its heartbeat
        would otherwise renew those leases while nothing can ever run them."""
        for runtime in self.stubs.values():
            for container in list(runtime.containers.values()):
                if container.backlog and not container.workers and not container.stopping:
                    held = [(t.id, t.fence) for t in container.backlog]
                    container.backlog.clear()
                    with contextlib.suppress(StoreError):
                        await self.store.release(held)

    def _enforce_memory(self) -> None:
        for worker in self._workers():
            pid = worker.pid
            if pid is None or worker.state is WorkerState.DEAD or worker.kill_reason is not None:
                continue
            limit = self._stub_of(worker).config.memory * 1024 * 1024
            try:
                rss = psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
            if rss > limit:
                worker.kill_reason = KillReason.MEMORY
                self._background(worker.kill(KillReason.MEMORY))

    def kill_task(self, task_id: str) -> bool:
        """Stop a task's attempt (cancelled or taken over): drop it, or kill its process."""
        for runtime in self.stubs.values():
            for container in runtime.containers.values():
                if container.drop_backlog(task_id):
                    return True
        for worker in self._workers():
            if worker.current is not None and worker.current.task_id == task_id:
                if worker.kill_reason is None:
                    worker.kill_reason = KillReason.CANCEL
                self._background(worker.kill(KillReason.CANCEL))
                return True
        return False

    async def _heartbeat(self, now: float) -> None:
        s = self.settings
        await self.store.agent_alive(s.agent_id, DEPLOYMENT in s.stub_types, s.stub_ids, now)
        for runtime in list(self.stubs.values()):
            for container in list(runtime.containers.values()):
                if not container.workers and not container.backlog:
                    continue
                lost = await self.store.heartbeat(
                    container.id, container.running(), self.settings.lease_s, now
                )
                for task_id in lost:
                    self.kill_task(task_id)

    # -- events ----------------------------------------------------------------------------
    async def _event_loop(self, subscription: Any) -> None:
        while True:
            async with self._survive("event handling"):
                event: Event | None = await subscription.get(timeout=None)
                if event is not None:
                    self.handle_event(event)

    def handle_event(self, event: Event) -> None:
        if event.kind == "enqueued":
            runtime = self.stubs.get(event.stub_id)
            if runtime is not None:
                runtime.maybe_work = True
                self._wake.set()
            else:
                self._next["stubs"] = 0.0  # maybe a new deployment: refresh on the next tick
        elif event.kind == "changed":  # another process wrote: new work, maybe a cancel
            for runtime in self.stubs.values():
                runtime.maybe_work = True
            self._wake.set()
            self._next["heartbeat"] = 0.0  # its answer names cancelled attempts
        elif event.kind == "cancel" and event.task_id:
            self.kill_task(event.task_id)
        elif event.kind == "warmup":
            if event.stub_id not in self.stubs:
                self._next["stubs"] = 0.0
            self.warmup(event.stub_id, time.time())

    # -- draining --------------------------------------------------------------------------
    async def drain(self) -> None:
        self._draining = True
        deadline = time.time() + self.settings.drain_grace_s
        while any(w.state is WorkerState.BUSY for w in self._workers()) and time.time() < deadline:
            await asyncio.sleep(0.05)
        await self._flush_outcomes()
        for worker in self._workers():
            if worker.state is WorkerState.BUSY:
                await worker.kill(KillReason.STOP)
        for runtime in list(self.stubs.values()):
            for container in list(runtime.containers.values()):
                await self._stop_container(runtime, container)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(StoreError):  # else it drops out of the directory in 15 s
            await self.store.agent_gone(self.settings.agent_id)

    # -- helpers ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _survive(
        self, chore: str, then: Callable[[], object] | None = None
    ) -> AsyncIterator[None]:
        """Log a failure of ``chore`` and pause, never end its loop: a loop that ended on an
        unexpected error left the agent looking alive while it never claimed again."""
        try:
            yield
        except StoreError as exc:
            log.warning("%s failed: %s", chore, exc, extra={"action": "agent_loop_failed"})
        except Exception:
            log.exception("%s failed", chore, extra={"action": "agent_loop_failed"})
        else:
            return
        await asyncio.sleep(self.settings.poll_s)
        if then is not None:
            then()

    def _workers(self) -> Iterator[WorkerProcess]:
        for runtime in self.stubs.values():
            for container in runtime.containers.values():
                yield from list(container.workers)

    def _stub_of(self, worker: WorkerProcess) -> StubRuntime:
        return self.stubs[worker.stub_id]

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("agent background job failed", exc_info=task.exception())


def _b64(text: str) -> bytes:
    return base64.b64decode(text)
