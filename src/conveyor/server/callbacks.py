"""Callback delivery (DESIGN A6): POST each terminal task's outbox row to its URL, signed.

The outbox lives in the store, so a restart loses nothing: rows are claimed with a lease,
delivered, and marked; a failed delivery is retried with exponential backoff until
``max_attempts`` deliveries have been tried. At most ``max_concurrent`` deliveries are in
flight at once: a burst of finished tasks (say, a backlog worked off after a restart) must not
open a connection per callback to one receiver, which a small server answers with resets and
each of those uses up an attempt.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx

from conveyor import clock
from conveyor.errors import StoreError
from conveyor.server.store.base import Store, Subscription
from conveyor.server.store.records import Callback
from conveyor.tasks import TaskStatus, is_terminal

log = logging.getLogger(__name__)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``base64(body) + ":" + timestamp`` keyed by ``secret``."""
    message = base64.b64encode(body) + b":" + str(timestamp).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def backoff_s(attempts: int, base_s: float, cap_s: float) -> float:
    """Delay before the next delivery after ``attempts`` tries: base, 2·base, 4·base, …"""
    return float(min(cap_s, base_s * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    #: Deliveries tried per callback before it is given up.
    max_attempts: int = 5
    #: Retry delays: ``backoff_base_s``, doubling, at most ``backoff_cap_s``.
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 300.0
    #: Callbacks claimed per step, and how long a claim holds before another sender may retry.
    batch: int = 32
    lease_s: float = 60.0
    http_timeout_s: float = 10.0
    #: A claimed batch takes turns on this many slots: ``batch / max_concurrent`` rounds of at
    #: most ``http_timeout_s`` each must fit in ``lease_s`` (32 / 8 × 10 s = 40 s < 60 s).
    max_concurrent: int = 8
    #: Due retries are looked for this often even when no task ends.
    tick_s: float = 5.0


@contextlib.asynccontextmanager
async def delivering(
    store: Store, settings: CallbackSettings | None = None
) -> AsyncIterator[None]:
    """A ``CallbackSender`` running until the block ends (safe in several processes)."""
    sender = CallbackSender(store, settings)
    stop = asyncio.Event()
    loop = asyncio.create_task(sender.run(stop))
    try:
        yield
    finally:
        stop.set()
        await loop
        await sender.aclose()


class CallbackSender:
    """Delivers due callbacks. ``run_once(now)`` is one step; ``run(stop)`` loops."""

    def __init__(
        self,
        store: Store,
        settings: CallbackSettings | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.store = store
        self.settings = settings = settings or CallbackSettings()
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._client = client or httpx.AsyncClient(timeout=settings.http_timeout_s)
        self._owns_client = client is None

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def run_once(self, now: float | None = None) -> int:
        """Claim due callbacks and try each once (concurrently). Returns how many were tried."""
        now = clock.now() if now is None else now
        claimed = await self.store.claim_callbacks(self.settings.batch, self.settings.lease_s, now)
        await asyncio.gather(*(self._deliver(callback, now) for callback in claimed))
        return len(claimed)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: woken by terminal ``task`` events, and every
        ``tick_s`` for retries that come due."""
        subscription = self.store.subscribe()
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    while await self.run_once() >= self.settings.batch and not stop.is_set():
                        pass
                except StoreError as exc:
                    log.warning("callback delivery step failed: %s", exc)
                await self._wait_for_work(subscription, stopped)
        finally:
            stopped.cancel()
            subscription.close()

    async def _wait_for_work(self, subscription: Subscription, stopped: asyncio.Task[Any]) -> None:
        """Return when a task reaches a terminal status, after ``tick_s``, or on stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.tick_s
        while (remaining := deadline - loop.time()) > 0:
            getter = asyncio.ensure_future(subscription.get(remaining))
            waiters: set[asyncio.Future[Any]] = {getter, stopped}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                return
            event = getter.result()
            if event is None or event.kind == "changed" or (
                event.kind == "task" and event.status is not None and is_terminal(event.status)
            ):
                return

    async def _deliver(self, callback: Callback, now: float) -> None:
        try:
            async with self._slots:
                error = await self._post(callback, int(now))
        except StoreError as exc:
            log.warning("callback %s: %s", callback.id, exc)
            return
        if error is None:
            await self.store.callback_delivered(callback.id, now)
            return
        s = self.settings
        give_up = callback.attempts >= s.max_attempts
        retry_at = None if give_up else now + backoff_s(
            callback.attempts, s.backoff_base_s, s.backoff_cap_s
        )
        log.info(
            "callback for task %s to %s failed (attempt %d): %s%s",
            callback.task_id, callback.url, callback.attempts, error,
            "; giving up" if give_up else "",
        )
        await self.store.callback_failed(callback.id, error, retry_at, now)

    async def _post(self, callback: Callback, timestamp: int) -> str | None:
        """Send one delivery; None on a 2xx answer, else what went wrong."""
        workspace = await self.store.get_workspace(callback.workspace_id)
        if workspace is None:
            return "workspace no longer exists"
        headers = {
            "content-type": "application/json",
            "x-task-id": callback.task_id,
            "x-task-status": TaskStatus(callback.status).value,
            "x-task-timestamp": str(timestamp),
            "x-task-signature": signature(workspace.signing_secret, callback.body, timestamp),
        }
        try:
            response = await self._client.post(callback.url, content=callback.body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"

