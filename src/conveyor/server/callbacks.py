"""Callback delivery (DESIGN A6, A13): POST each terminal task's outbox row to its URL, signed.

The outbox lives in the store, so a restart loses nothing: rows are claimed with a lease,
delivered, and marked; a failed delivery is retried with exponential backoff until
``max_attempts`` deliveries have been tried.

Deliveries run independently of each other: each has a total deadline (``deadline_s``, not a
per-read timeout, so a receiver dripping a byte at a time cannot hold it longer), reads at
most ``max_answer_bytes`` of the answer (streamed, then dropped), and frees its slot when it
ends, at which point the next due callback starts. A workspace has at most
``max_concurrent`` deliveries leased at once (counted in the store, across senders), so one
tenant's slow receivers cannot take another tenant's slots; ``max_total`` bounds one sender.
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
    """Hex HMAC-SHA256 of ``base64(body) + ":" + timestamp`` keyed by ``secret`` (Beam's)."""
    message = base64.b64encode(body) + b":" + str(timestamp).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def conveyor_signature(
    secret: str, body: bytes, timestamp: int, task_id: str, status: str
) -> str:
    """Hex HMAC-SHA256 of ``base64(body):timestamp:task_id:status`` keyed by ``secret``: a
    receiver checking it can trust the ``x-task-id`` and ``x-task-status`` headers too."""
    message = b":".join(
        [base64.b64encode(body), str(timestamp).encode(), task_id.encode(), status.encode()]
    )
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
    #: Callbacks claimed per step at most, and how long a claim holds before another sender
    #: may retry it (longer than ``deadline_s``: a delivery starts as soon as it is claimed).
    batch: int = 32
    lease_s: float = 60.0
    #: Connect and per-read timeout; ``deadline_s`` bounds the whole delivery.
    http_timeout_s: float = 10.0
    deadline_s: float = 30.0
    #: The receiver's answer is read up to this many bytes, then dropped.
    max_answer_bytes: int = 64 * 1024
    #: Deliveries in flight per workspace (across senders), and in this sender in all.
    max_concurrent: int = 8
    max_total: int = 64
    #: Due retries are looked for this often even when no task ends.
    tick_s: float = 5.0
    #: On stop, deliveries in flight get this long to end; then they are cancelled (their
    #: rows are retried when the lease ends: at least once, never lost).
    stop_grace_s: float = 5.0


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
    """Delivers due callbacks. ``run_once(now)`` delivers what is due and returns when those
    deliveries end; ``run(stop)`` loops, starting each due callback as a slot frees."""

    def __init__(
        self,
        store: Store,
        settings: CallbackSettings | None = None,
        *,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.store = store
        self.settings = settings = settings or CallbackSettings()
        self._client = client or httpx.AsyncClient(timeout=settings.http_timeout_s)
        self._owns_client = client is None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        await self._drain(0.0)
        if self._owns_client:
            await self._client.aclose()

    async def run_once(self, now: float | None = None) -> int:
        """Deliver the callbacks due at ``now`` (at most ``batch``), each once, a slot at a
        time per workspace. Returns how many were tried."""
        now = clock.now() if now is None else now
        tried = 0
        while True:
            started = await self._start_due(now, self.settings.batch - tried)
            tried += started
            if not self._in_flight:
                return tried
            if tried >= self.settings.batch:
                await asyncio.wait(self._in_flight)
                return tried
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until ``stop`` is set: woken by terminal ``task`` events, by a delivery
        ending (its slot is free), and every ``tick_s`` for retries that come due."""
        subscription = self.store.subscribe()
        stopped = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                try:
                    while await self._start_due(clock.now()) and not stop.is_set():
                        pass
                except StoreError as exc:
                    log.warning("callback delivery step failed: %s", exc)
                await self._wait_for_work(subscription, stopped)
        finally:
            stopped.cancel()
            subscription.close()
            await self._drain(self.settings.stop_grace_s)

    async def _start_due(self, now: float, limit: int | None = None) -> int:
        """Claim due callbacks into the free slots and start their deliveries."""
        free = self.settings.max_total - len(self._in_flight)
        want = min(free, self.settings.batch if limit is None else limit)
        if want <= 0:
            return 0
        claimed = await self.store.claim_callbacks(
            want, self.settings.lease_s, now, per_workspace=self.settings.max_concurrent
        )
        for callback in claimed:
            delivery = asyncio.create_task(self._deliver(callback, now))
            self._in_flight.add(delivery)
            delivery.add_done_callback(self._in_flight.discard)
        return len(claimed)

    async def _drain(self, grace_s: float) -> None:
        if not self._in_flight:
            return
        if grace_s > 0:
            await asyncio.wait(set(self._in_flight), timeout=grace_s)
        pending = set(self._in_flight)
        for delivery in pending:
            delivery.cancel()
        if pending:
            await asyncio.wait(pending)

    async def _wait_for_work(self, subscription: Subscription, stopped: asyncio.Task[Any]) -> None:
        """Return when a task reaches a terminal status, a delivery ends, after ``tick_s``,
        or on stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.tick_s
        while (remaining := deadline - loop.time()) > 0:
            getter = asyncio.ensure_future(subscription.get(remaining))
            waiters: set[asyncio.Future[Any]] = {getter, stopped, *self._in_flight}
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                return
            event = getter.result()
            if done - {getter} or event is None or event.kind == "changed" or (
                event.kind == "task" and event.status is not None and is_terminal(event.status)
            ):
                return

    async def _deliver(self, callback: Callback, now: float) -> None:
        try:
            error = await self._post(callback, int(now))
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
        except StoreError as exc:  # the lease ends and the row is tried again
            log.warning("callback %s: %s", callback.id, exc)
        except Exception:  # one delivery's surprise must not end the sender
            log.exception("callback %s failed unexpectedly", callback.id)

    async def _post(self, callback: Callback, timestamp: int) -> str | None:
        """Send one delivery; None on a 2xx answer, else what went wrong."""
        workspace = await self.store.get_workspace(callback.workspace_id)
        if workspace is None:
            return "workspace no longer exists"
        status = TaskStatus(callback.status).value
        secret = workspace.signing_secret
        headers = {
            "content-type": "application/json",
            "x-task-id": callback.task_id,
            "x-task-status": status,
            "x-task-timestamp": str(timestamp),
            "x-task-signature": signature(secret, callback.body, timestamp),
            "x-conveyor-signature": conveyor_signature(
                secret, callback.body, timestamp, callback.task_id, status
            ),
        }
        try:
            async with asyncio.timeout(self.settings.deadline_s):
                request = self._client.build_request(
                    "POST", callback.url, content=callback.body, headers=headers
                )
                response = await self._client.send(request, stream=True)
                try:
                    await self._read_some(response)
                finally:
                    await response.aclose()
        except TimeoutError:
            return f"no answer within {self.settings.deadline_s:g} s"
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.is_success:
            return None
        return f"HTTP {response.status_code}"

    async def _read_some(self, response: httpx.Response) -> None:
        """Read the answer up to ``max_answer_bytes``; the rest is never read."""
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read >= self.settings.max_answer_bytes:
                return
