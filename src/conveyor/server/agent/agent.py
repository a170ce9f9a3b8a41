"""The agent: one per machine. Wires a supervisor (containers, processes, limits) to a
dispatcher (claims, hand-over, outcome writing) and runs them: the periodic chores (among
them the ticks of the schedules it runs), the store's events, heartbeats and the drain on
shutdown.

Periodic work is one ``tick(now)`` so tests can step it; dispatch and outcome writing are
event-driven so a task is picked up within milliseconds of its enqueue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from conveyor.errors import StoreError
from conveyor.server.agent.dispatcher import Dispatcher
from conveyor.server.agent.handle import ProcessState, Spawn
from conveyor.server.agent.log_sink import LogSink
from conveyor.server.agent.loops import survive
from conveyor.server.agent.process import RunnerProcess
from conveyor.server.agent.runtime import StubRuntime
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.agent.supervisor import Supervisor
from conveyor.server.schedules import Ticker
from conveyor.server.store.base import Store
from conveyor.server.store.records import DEPLOYED, Event, Stub

log = logging.getLogger("conveyor.server.agent")

#: How often environments no stub has used for a day are looked for (and removed).
ENVIRONMENTS_SWEEP_S = 3600.0


class Agent:
    def __init__(
        self,
        store: Store,
        settings: AgentSettings | None = None,
        *,
        spawn: Spawn = RunnerProcess,
        say: Callable[[str], None] | None = None,
    ) -> None:
        """``say``: where the progress of image builds goes (a console), else the log."""
        self.store = store
        self.settings = settings or AgentSettings()
        self.stubs: dict[str, StubRuntime] = {}
        #: Stubs whose config cannot be used, by id: the config version that was refused.
        self.broken: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._next: dict[str, float] = {}
        self.logs = LogSink(store, self.settings.log_limits)
        self.dispatcher = Dispatcher(store, self.settings, self.stubs, self._poke, self.logs)
        self.supervisor = Supervisor(
            store,
            self.settings,
            self.stubs,
            spawn=spawn,
            on_done=self.dispatcher.on_done,
            report=self.dispatcher.report,
            wake=self._poke,
            logs=self.logs,
            say=say,
        )
        self.ticker = Ticker(store, self._runs)

    # -- running ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, then drain: no new claims, running tasks get
        ``drain_grace_s`` to finish, the rest go back to the queue."""
        subscription = self.store.subscribe()
        # Woken by the commit (or the NOTIFY) itself: no task switch in between.
        subscription.deliver_to(self._on_event)
        loops = [
            asyncio.create_task(self._dispatch_loop()),
            asyncio.create_task(self.dispatcher.outcome_loop()),
            asyncio.create_task(self._log_loop()),
        ]
        try:
            while not stop.is_set():
                async with survive("tick", self.settings.poll_s):
                    await self.tick(time.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.tick_s)
            await self.drain()
        finally:
            subscription.close()
            for loop in loops:
                loop.cancel()
            await asyncio.gather(*loops, return_exceptions=True)
            await self.dispatcher.flush_outcomes()
            with contextlib.suppress(StoreError):
                await self.logs.flush()  # lines of attempts released by the drain

    async def _log_loop(self) -> None:
        while True:
            async with survive("log writing", self.settings.poll_s):
                await self.logs.loop()

    async def tick(self, now: float) -> None:
        """One step of periodic work; each chore runs when its interval has passed."""
        s = self.settings
        if self._due("stubs", now, s.stubs_refresh_s):
            await self.refresh_stubs()
        self.supervisor.enforce_timeouts(now)
        await self.supervisor.release_stranded()
        if self._due("memory", now, s.memory_check_s):
            self.supervisor.enforce_memory()
        if self._due("heartbeat", now, s.heartbeat_s):
            await self._heartbeat(now)
        if self._due("sweep", now, s.sweep_s):
            await self.store.sweep(now)
        if self._due("environments", now, ENVIRONMENTS_SWEEP_S):
            self.supervisor.background(self.supervisor.sweep_environments(now))
        if self._due("schedules", now, s.schedule_s):
            await self.ticker.run_once(now)
        if self._due("poll", now, s.poll_s):
            for runtime in self.stubs.values():
                runtime.maybe_work = True
            self._wake.set()
        if not self.supervisor.draining:
            await self.supervisor.autoscale(now)

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
        self._stop_gone({stub.id: stub for stub in stubs})
        for stub in stubs:
            runtime = self.stubs.get(stub.id)
            if not stub.active:
                continue
            if runtime is not None and runtime.stub.config_version == stub.config_version:
                runtime.stub = stub  # the same, or started again
                continue
            if self.broken.get(stub.id) == stub.config_version:
                continue  # said once; a new config version is looked at again
            try:
                self._adopt(stub)
            except Exception as exc:  # one stub's row never stops the others
                self.broken[stub.id] = stub.config_version
                log.error(
                    "stub %s (%s) is not served: its config cannot be used: %s",
                    stub.id,
                    stub.name,
                    exc,
                    extra={"action": "stub_broken"},
                )
            else:
                self.broken.pop(stub.id, None)

    def _stop_gone(self, current: dict[str, Stub]) -> None:
        """Versions stopped or deleted since the last look: no more claims, and their
        containers stop as they go idle (``Supervisor.autoscale``); running tasks finish."""
        for stub_id, runtime in self.stubs.items():
            stub = current.get(stub_id)
            if runtime.stub.active and (stub is None or not stub.active):
                runtime.stub = stub or replace(runtime.stub, active=False)
                log.info(
                    "%s v%d is stopped: its tasks are no longer claimed here",
                    runtime.stub.name,
                    runtime.stub.version,
                    extra={"action": "stub_stopped"},
                )

    def _adopt(self, stub: Stub) -> StubRuntime:
        """Serve ``stub``; ``ConveyorError`` (nothing changed) if its config is not valid."""
        config = stub.queue_config
        runtime = self.stubs.get(stub.id)
        if runtime is None:
            runtime = self.stubs[stub.id] = StubRuntime(stub, config)
        else:  # a serve stub whose config changed: retire its containers, start new ones
            runtime.stub, runtime.config = stub, config
            for container in list(runtime.containers.values()):
                self.supervisor.background(self.supervisor.stop_container(runtime, container))
        return runtime

    async def dispatch(self, now: float) -> int:
        """One dispatch round (see ``Dispatcher.dispatch``); the number of tasks claimed."""
        return await self.dispatcher.dispatch(now)

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.supervisor.draining:
                continue
            async with survive("dispatch", self.settings.poll_s, then=self._wake.set):
                await self.dispatch(time.time())

    async def _runs(self, stub: Stub) -> bool:
        """This agent runs ``stub`` (so it makes its schedule's ticks)."""
        return stub.id in self.stubs

    def _poke(self, runtime: StubRuntime) -> None:
        """A stub may have claimable work now (a process came free or started)."""
        runtime.maybe_work = True
        self._wake.set()

    def warmup(self, stub_id: str, now: float) -> None:
        self.supervisor.warmup(stub_id, now)

    def kill_task(self, task_id: str) -> bool:
        """Stop a task's attempt (cancelled or taken over): drop it, or kill its process."""
        return self.supervisor.kill_task(task_id)

    async def _heartbeat(self, now: float) -> None:
        s = self.settings
        runs_deployed = DEPLOYED.issubset(s.stub_types)
        await self.store.agent_alive(
            s.agent_id, runs_deployed, s.stub_ids, now, builds=self.supervisor.build_states()
        )
        for runtime in list(self.stubs.values()):
            for container in list(runtime.containers.values()):
                if not container.processes and not container.backlog:
                    continue
                lost = await self.store.heartbeat(
                    container.id, container.running(), self.settings.lease_s, now
                )
                for task_id in lost:
                    self.kill_task(task_id)

    # -- events ----------------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        try:
            self.handle_event(event)
        except Exception:  # the publisher (a commit, the LISTEN loop) must not see it
            log.exception("event handling failed", extra={"action": "agent_loop_failed"})

    def handle_event(self, event: Event) -> None:
        if event.kind == "enqueued":
            runtime = self.stubs.get(event.stub_id)
            if runtime is not None:
                self._poke(runtime)
            else:
                self._next["stubs"] = 0.0  # maybe a new deployment: refresh on the next tick
        elif event.kind == "changed":  # another process wrote: new work, maybe a cancel
            for runtime in self.stubs.values():
                runtime.maybe_work = True
            self._wake.set()
            self._next["heartbeat"] = 0.0  # its answer names cancelled attempts
        elif event.kind == "stub":  # stopped, started or deleted: look at once
            self._next["stubs"] = 0.0
        elif event.kind == "cancel" and event.task_id:
            self.kill_task(event.task_id)
        elif event.kind == "warmup":
            if event.stub_id not in self.stubs:
                self._next["stubs"] = 0.0
            self.warmup(event.stub_id, time.time())

    # -- draining --------------------------------------------------------------------------
    async def drain(self) -> None:
        self.supervisor.draining = True
        deadline = time.time() + self.settings.drain_grace_s
        busy = ProcessState.BUSY
        while any(p.state is busy for p in self.supervisor.processes()) and time.time() < deadline:
            await asyncio.sleep(0.05)
        await self.dispatcher.flush_outcomes()
        await self.supervisor.environments.close()  # the starts waiting on them give up
        await self.supervisor.stop_all()
        with contextlib.suppress(StoreError):  # else it drops out of the directory in 15 s
            await self.store.agent_gone(self.settings.agent_id)
