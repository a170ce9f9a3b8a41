"""Callback delivery to a real local HTTP receiver, signature checked as a receiver would."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import orjson
import pytest

from conveyor.server.callbacks import CallbackSender, CallbackSettings, delivering
from conveyor.server.store.base import Store
from tests.gateway.conftest import Tenant, deploy, finish, start


@dataclass
class Receiver:
    url: str
    #: Status codes to answer, in order; 200 once they run out.
    answers: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    #: Seconds each answer takes, and the most requests it had in hand at once.
    delay_s: float = 0.0
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            with state.lock:
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(state.delay_s)
            with state.lock:
                state.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                state.in_flight -= 1
                answer = state.answers.pop(0) if state.answers else 200
            self.send_response(answer)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    message = base64.b64encode(body) + b":" + headers["x-task-timestamp"].encode()
    expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, headers["x-task-signature"])


async def completed_task(http: httpx.AsyncClient, store: Store, tenant: Tenant, url: str) -> str:
    stub = await deploy(store, tenant, "resize")
    response = await http.post("/taskqueue/resize", json={"callback_url": url}, headers=tenant.auth)
    task_id: str = response.json()["task_id"]
    await finish(store, await start(store, stub), result='{"ok": true}')
    return task_id


async def test_delivers_signed_callback_once(
    http: httpx.AsyncClient, store: Store, alice: Tenant, receiver: Receiver
) -> None:
    task_id = await completed_task(http, store, alice, receiver.url)
    sender = CallbackSender(store)
    try:
        assert await sender.run_once() == 1
        assert await sender.run_once() == 0
    finally:
        await sender.aclose()
    ((headers, body),) = receiver.received
    assert orjson.loads(body) == {"data": {"ok": True}}
    assert headers["x-task-id"] == task_id
    assert headers["x-task-status"] == "COMPLETE"
    assert abs(int(headers["x-task-timestamp"]) - time.time()) < 60
    assert verify(alice.workspace.signing_secret, headers, body)
    assert not verify("another secret", headers, body)


async def test_cancelled_task_callback_has_empty_data(
    http: httpx.AsyncClient, store: Store, alice: Tenant, receiver: Receiver
) -> None:
    await deploy(store, alice, "resize")
    response = await http.post(
        "/taskqueue/resize", json={"callback_url": receiver.url}, headers=alice.auth
    )
    task_id = response.json()["task_id"]
    await http.post("/v2/task/cancel/", json={"task_ids": [task_id]}, headers=alice.auth)
    sender = CallbackSender(store)
    try:
        await sender.run_once()
    finally:
        await sender.aclose()
    ((headers, body),) = receiver.received
    assert headers["x-task-status"] == "CANCELLED"
    assert orjson.loads(body) == {"data": {}}


async def test_failed_delivery_is_retried_with_backoff(
    http: httpx.AsyncClient, store: Store, alice: Tenant, receiver: Receiver
) -> None:
    await completed_task(http, store, alice, receiver.url)
    receiver.answers = [500, 503]
    sender = CallbackSender(store, CallbackSettings(backoff_base_s=10))
    now = time.time()
    try:
        assert await sender.run_once(now) == 1  # 500
        assert await sender.run_once(now + 5) == 0  # not due before 10 s
        assert await sender.run_once(now + 11) == 1  # 503, next after 20 s more
        assert await sender.run_once(now + 25) == 0
        assert await sender.run_once(now + 32) == 1  # 200
        assert await sender.run_once(now + 1000) == 0
    finally:
        await sender.aclose()
    assert len(receiver.received) == 3
    assert len({h["x-task-id"] for h, _ in receiver.received}) == 1


async def test_gives_up_after_max_attempts(
    http: httpx.AsyncClient, store: Store, alice: Tenant, receiver: Receiver
) -> None:
    await completed_task(http, store, alice, receiver.url)
    receiver.answers = [500] * 10
    sender = CallbackSender(store, CallbackSettings(backoff_base_s=1, backoff_cap_s=1))
    now = time.time()
    try:
        tried = [await sender.run_once(now + 2 * step) for step in range(8)]
    finally:
        await sender.aclose()
    assert tried == [1, 1, 1, 1, 1, 0, 0, 0]
    assert len(receiver.received) == 5


async def test_unreachable_receiver_counts_as_a_failed_attempt(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await completed_task(http, store, alice, "http://127.0.0.1:9/closed")
    sender = CallbackSender(store, CallbackSettings(backoff_base_s=1, http_timeout_s=2))
    now = time.time()
    try:
        assert await sender.run_once(now) == 1
        assert await sender.run_once(now) == 0
        assert await sender.run_once(now + 1.5) == 1
    finally:
        await sender.aclose()


async def test_a_burst_of_callbacks_goes_out_a_few_at_a_time(
    http: httpx.AsyncClient, store: Store, alice: Tenant, receiver: Receiver
) -> None:
    # Found by the fault suite: after a restart a backlog of 1,100 tasks finished within
    # seconds, the sender opened a connection per callback at once, the receiver (Python's
    # http.server, accept backlog 5) reset them, and 19 callbacks ran out of attempts.
    receiver.delay_s = 0.05
    stub = await deploy(store, alice, "resize")
    for _ in range(20):
        await http.post(
            "/taskqueue/resize", json={"callback_url": receiver.url}, headers=alice.auth
        )
    for _ in range(20):
        await finish(store, await start(store, stub), result="{}")
    sender = CallbackSender(store, CallbackSettings(max_concurrent=4))
    try:
        assert await sender.run_once() == 20
    finally:
        await sender.aclose()
    assert len(receiver.received) == 20
    assert 2 <= receiver.most_in_flight <= 4


async def test_run_loop_is_woken_by_terminal_events(
    http: httpx.AsyncClient, store: Store, alice: Tenant, receiver: Receiver
) -> None:
    sender = CallbackSender(store, CallbackSettings(tick_s=60))
    stop = asyncio.Event()
    loop = asyncio.create_task(sender.run(stop))
    try:
        await asyncio.sleep(0.2)
        await completed_task(http, store, alice, receiver.url)
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(receiver.received) == 1  # long before the 60 s tick
    finally:
        stop.set()
        await asyncio.wait_for(loop, 5)
        await sender.aclose()


async def test_the_server_delivers_callbacks_beside_the_gateway(
    http: httpx.AsyncClient, store: Store, alice: Tenant, receiver: Receiver
) -> None:
    async with delivering(store):  # as serve and server run it
        await asyncio.sleep(0.2)
        await completed_task(http, store, alice, receiver.url)
        deadline = time.monotonic() + 10
        while not receiver.received and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    assert len(receiver.received) == 1
