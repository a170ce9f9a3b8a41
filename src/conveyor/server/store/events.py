"""In-process fan-out of store events to subscribers, and their wire form for NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import orjson

from conveyor.server.store.records import Event, EventKind
from conveyor.tasks import TaskStatus

#: The PostgreSQL NOTIFY channel of store events.
CHANNEL = "conveyor"
#: A subscriber that stops reading loses its oldest events rather than growing without bound.
QUEUE_LIMIT = 10_000


def event_to_json(event: Event) -> str:
    """Compact JSON (well under PostgreSQL's 8000-byte NOTIFY limit)."""
    data: dict[str, Any] = {"k": event.kind, "s": event.stub_id}
    if event.task_id is not None:
        data["t"] = event.task_id
    if event.status is not None:
        data["st"] = event.status.value
    if event.container_id is not None:
        data["c"] = event.container_id
    return orjson.dumps(data).decode()


def event_from_json(text: str | bytes) -> Event:
    data = orjson.loads(text)
    kind: EventKind = data["k"]
    status = data.get("st")
    return Event(
        kind=kind,
        stub_id=data["s"],
        task_id=data.get("t"),
        status=TaskStatus(status) if status is not None else None,
        container_id=data.get("c"),
    )


class QueueSubscription:
    """One subscriber's queue of events."""

    def __init__(self, broadcaster: Broadcaster) -> None:
        self._broadcaster = broadcaster
        self._queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_LIMIT)
        self._handler: Callable[[Event], None] | None = None

    def deliver_to(self, handler: Callable[[Event], None]) -> None:
        """Hand every event to ``handler`` as it is published (on the event loop, right
        after the commit that made it) instead of queuing it for ``get``: no task switch
        between a commit and its subscriber. ``handler`` must not raise or block."""
        self._handler = handler
        while not self._queue.empty():
            handler(self._queue.get_nowait())

    def put(self, event: Event) -> None:
        if self._handler is not None:
            self._handler(event)
            return
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
        self._queue.put_nowait(event)

    async def get(self, timeout: float | None = None) -> Event | None:
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        self._broadcaster.discard(self)


class Broadcaster:
    """Delivers each published event to every open subscription (call from the event loop)."""

    def __init__(self) -> None:
        self._subscriptions: set[QueueSubscription] = set()

    def subscribe(self) -> QueueSubscription:
        subscription = QueueSubscription(self)
        self._subscriptions.add(subscription)
        return subscription

    def discard(self, subscription: QueueSubscription) -> None:
        self._subscriptions.discard(subscription)

    def publish(self, event: Event) -> None:
        for subscription in list(self._subscriptions):
            subscription.put(event)
