"""Store notifications fanned out to event streams by task id, and open streams counted.

ONE store subscription per gateway process feeds a map from task id to the streams watching
it, so a ``task`` event makes only that task's streams read the store (not every stream, as
one subscription per stream did), and a ``logs`` event only its log streams. SQLite's
cross-process ``changed`` event names no task: it wakes every stream, but at most once per
``CHANGED_COALESCE_S`` however many arrive.

The hub also counts open streams per workspace (DESIGN A13: at most
``max_streams_per_workspace``, the API's subscribe and the dashboard's live stream together).
"""

from __future__ import annotations

import asyncio
import time

from conveyor.server.gateway.errors import TooManyStreams
from conveyor.server.store.base import Store, Subscription
from conveyor.server.store.records import Event, EventKind

#: ``changed`` events (no task id) wake every stream at most this often.
CHANGED_COALESCE_S = 0.25
#: Events that wake the streams of their task: ``task``, its status changed; ``logs``, lines
#: of it were stored.
ABOUT_A_TASK: frozenset[EventKind] = frozenset({"task", "logs"})
STATUS: frozenset[EventKind] = frozenset({"task"})


class Watcher:
    """One stream's interest in one task: woken by the hub when an event of ``kinds`` names
    that task (or a ``changed`` event names none)."""

    __slots__ = ("_hub", "_woken", "kinds", "task_id")

    def __init__(self, hub: StreamHub, task_id: str, kinds: frozenset[EventKind]) -> None:
        self._hub = hub
        self.task_id = task_id
        self.kinds = kinds
        self._woken = asyncio.Event()

    def wake(self) -> None:
        self._woken.set()

    async def wait(self, timeout: float) -> bool:
        """True when woken (any number of wakes since the last call count once), False after
        ``timeout`` seconds without one."""
        try:
            async with asyncio.timeout(timeout):
                await self._woken.wait()
        except TimeoutError:
            return False
        self._woken.clear()
        return True

    def close(self) -> None:
        self._hub.unwatch(self)


class StreamSlot:
    """One open stream of a workspace; ``release`` (idempotent) frees it."""

    __slots__ = ("_hub", "_released", "workspace_id")

    def __init__(self, hub: StreamHub, workspace_id: str) -> None:
        self._hub = hub
        self.workspace_id = workspace_id
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._hub.release(self.workspace_id)


class StreamHub:
    """The gateway's one store subscription, fanned out to streams by task id."""

    def __init__(self) -> None:
        self._by_task: dict[str, set[Watcher]] = {}
        self._count = 0
        self._subscription: Subscription | None = None
        self._pump: asyncio.Task[None] | None = None
        self._changed: asyncio.TimerHandle | None = None
        self._last_wake_all = 0.0
        self._open: dict[str, int] = {}

    # -- slots -----------------------------------------------------------------------------
    def open_slot(self, workspace_id: str, limit: int) -> StreamSlot:
        """A slot for one more stream of ``workspace_id``; ``TooManyStreams`` at ``limit``."""
        count = self._open.get(workspace_id, 0)
        if count >= limit:
            raise TooManyStreams(f"too many open event streams: at most {limit} per workspace")
        self._open[workspace_id] = count + 1
        return StreamSlot(self, workspace_id)

    def release(self, workspace_id: str) -> None:
        count = self._open.get(workspace_id, 0) - 1
        if count > 0:
            self._open[workspace_id] = count
        else:
            self._open.pop(workspace_id, None)

    def open_streams(self, workspace_id: str) -> int:
        return self._open.get(workspace_id, 0)

    # -- watchers --------------------------------------------------------------------------
    def watch(
        self, store: Store, task_id: str, kinds: frozenset[EventKind] = STATUS
    ) -> Watcher:
        """Wake the returned watcher on each notification of ``kinds`` about ``task_id``.
        Subscribes (once per hub) before returning, so a change right after is not missed."""
        if self._subscription is None:
            self._subscription = store.subscribe()
            self._pump = asyncio.get_running_loop().create_task(self._run(self._subscription))
        watcher = Watcher(self, task_id, kinds)
        self._by_task.setdefault(task_id, set()).add(watcher)
        self._count += 1
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        watchers = self._by_task.get(watcher.task_id)
        if watchers is None or watcher not in watchers:
            return
        watchers.discard(watcher)
        if not watchers:
            del self._by_task[watcher.task_id]
        self._count -= 1
        if self._count == 0:
            self._stop()

    def watched(self) -> int:
        return self._count

    def _stop(self) -> None:
        if self._changed is not None:
            self._changed.cancel()
            self._changed = None
        if self._pump is not None:
            self._pump.cancel()
            self._pump = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None

    async def _run(self, subscription: Subscription) -> None:
        while True:
            event = await subscription.get()
            if event is not None:
                self._deliver(event)

    def _deliver(self, event: Event) -> None:
        if event.kind in ABOUT_A_TASK and event.task_id is not None:
            for watcher in self._by_task.get(event.task_id, ()):
                if event.kind in watcher.kinds:
                    watcher.wake()
        elif event.kind == "changed" and self._changed is None:
            delay = max(0.0, self._last_wake_all + CHANGED_COALESCE_S - time.monotonic())
            self._changed = asyncio.get_running_loop().call_later(delay, self._wake_all)

    def _wake_all(self) -> None:
        self._changed = None
        self._last_wake_all = time.monotonic()
        for watchers in self._by_task.values():
            for watcher in watchers:
                watcher.wake()
