"""The agent's hot path: claim tasks for idle processes (plus a prefetched backlog for short
tasks), hand them over, and write outcomes back in batches."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from conveyor.error_info import ErrorInfo
from conveyor.errors import StoreError
from conveyor.server.agent.handle import Attempt, ProcessHandle
from conveyor.server.agent.log_sink import LogSink
from conveyor.server.agent.loops import survive
from conveyor.server.agent.runtime import Container, StubRuntime
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.store.base import Store
from conveyor.server.store.records import Outcome
from conveyor.tasks import TaskStatus

#: A task's result (its JSON text) is at most this many bytes (DESIGN A13).
MAX_RESULT_BYTES = 10 * 1024 * 1024

log = logging.getLogger("conveyor.server.agent")

#: Pauses between attempts to write a batch of outcomes; after the last, the batch is dropped.
WRITE_RETRY_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0)


def done_outcome(attempt: Attempt, msg: dict[str, Any]) -> Outcome:
    """The outcome of a ``done`` frame; a result over ``MAX_RESULT_BYTES`` makes it FAILED
    with ``ResultTooLarge`` (the same on every retry, so not retried)."""
    status = TaskStatus.COMPLETE if msg.get("status") == "COMPLETE" else TaskStatus.FAILED
    error = msg.get("error")
    result = msg.get("result")
    outputs = [(o["name"], base64.b64decode(o["data"])) for o in msg.get("outputs") or ()]
    retryable = bool(msg.get("retryable"))
    size = len(result.encode()) if isinstance(result, str) else 0
    if size > MAX_RESULT_BYTES:
        status, result, outputs, retryable = TaskStatus.FAILED, None, [], False
        error = ErrorInfo(
            "ResultTooLarge", f"the result is {size} bytes; at most {MAX_RESULT_BYTES} are kept"
        ).to_dict()
    return Outcome(
        task_id=attempt.task_id,
        fence=attempt.fence,
        status=status,
        result=result,
        error=orjson.dumps(error).decode() if error else None,
        retryable=retryable,
        outputs=outputs,
    )


class Dispatcher:
    def __init__(
        self,
        store: Store,
        settings: AgentSettings,
        stubs: dict[str, StubRuntime],
        wake: Callable[[StubRuntime], None],
        logs: LogSink | None = None,
    ) -> None:
        self.store = store
        self.logs = logs or LogSink(store, settings.log_limits)
        self.settings = settings
        self.stubs = stubs
        self._wake = wake
        self._outcomes: asyncio.Queue[Outcome] = asyncio.Queue()

    async def dispatch(self, now: float) -> int:
        """Feed every container's backlog to its idle processes, then claim tasks for the
        idle processes (plus a backlog for short tasks) of stubs that may have work; return
        how many were claimed."""
        claimed = 0
        for runtime in list(self.stubs.values()):
            containers = [c for c in runtime.containers.values() if not c.stopping]
            for container in containers:  # before any claim: a short claim ends the round
                self.feed(container, now)
            if not runtime.maybe_work or not runtime.stub.active:  # stopped: no claims
                continue
            # Cleared before the claims, not after: an enqueue that commits while a claim is
            # in flight pokes the stub again, and that poke must not be lost (else its task
            # waits for the next poll tick).
            runtime.maybe_work = False
            for container in containers:
                want = self._wanted(runtime, container)
                if want <= 0 or not container.processes:
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
                self.feed(container, now)
                if len(tasks) < want:
                    break  # the queue is empty for now
            else:
                runtime.maybe_work = True  # no claim came back short: there may be more
        return claimed

    def _wanted(self, runtime: StubRuntime, container: Container) -> int:
        idle = len(container.idle_processes())
        depth = runtime.prefetch(len(container.processes), self.settings.prefetch_budget_s)
        # Refill the backlog only once it is half used: fewer, larger claims.
        refill = depth - len(container.backlog) if len(container.backlog) <= depth // 2 else 0
        return idle + refill

    def feed(self, container: Container, now: float) -> None:
        """Give backlog tasks to idle processes."""
        for process in container.idle_processes():
            if not container.backlog:
                return
            process.run(container.backlog.popleft(), now)
            container.last_active = now

    async def on_done(self, process: ProcessHandle, attempt: Attempt, msg: dict[str, Any]) -> None:
        self.logs.end(attempt)
        self.report(done_outcome(attempt, msg))
        runtime = self.stubs[process.stub_id]
        now = time.time()
        runtime.observe(now - attempt.dispatched_at)
        container = runtime.containers.get(process.container_id)
        if container is not None:
            container.last_active = now
            self.feed(container, now)
        self._wake(runtime)

    # -- outcomes --------------------------------------------------------------------------
    def report(self, outcome: Outcome) -> None:
        """Queue an outcome for the next batch write."""
        self._outcomes.put_nowait(outcome)

    async def outcome_loop(self) -> None:
        while True:
            first = await self._outcomes.get()
            batch = [first]
            while not self._outcomes.empty():
                batch.append(self._outcomes.get_nowait())
            # Lost outcomes are not lost tasks: their leases expire and the sweep retries them.
            async with survive("outcome writing", self.settings.poll_s):
                await self._write(batch)

    async def flush_outcomes(self) -> None:
        batch: list[Outcome] = []
        while not self._outcomes.empty():
            batch.append(self._outcomes.get_nowait())
        if batch:
            await self._write(batch)

    async def _write(self, batch: list[Outcome]) -> None:
        await self.logs.flush()  # a task's lines are stored before its outcome
        for delay in WRITE_RETRY_S:
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
