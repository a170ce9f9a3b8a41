"""Callback limits (DESIGN A13) against real receivers on 127.0.0.1: hostile answers (huge,
dripping, slow) cost one delivery its deadline and nothing more, and one tenant's slow
receivers never hold another tenant's callbacks."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from conveyor.server.callbacks import CallbackSender, CallbackSettings
from conveyor.server.store.base import Store
from conveyor.server.store.records import NewTask
from tests.gateway.conftest import Tenant, deploy, finish, start, tenant

Behaviour = Callable[[socket.socket], None]


class RawReceiver:
    """A TCP server answering each connection with ``behaviour`` (after reading the request
    head and body), recording when each request arrived."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.arrivals: list[tuple[float, bytes]] = []
        self.stop = threading.Event()
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                conn: socket.socket = self.request
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(body) < length:
                    body += conn.recv(65536)
                outer.arrivals.append((time.monotonic(), head + b"\r\n\r\n" + body))
                with contextlib.suppress(OSError):
                    behaviour(conn)

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[Callable[[Behaviour], RawReceiver]]:
    made: list[RawReceiver] = []

    def make(behaviour: Behaviour) -> RawReceiver:
        made.append(RawReceiver(behaviour))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def ok(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


async def callbacks_to(store: Store, who: Tenant, url: str, n: int = 1) -> list[str]:
    """``n`` finished tasks of ``who`` whose callbacks go to ``url``."""
    stub = await deploy(store, who, f"q{abs(hash(url)) % 10_000}")
    new = NewTask('{"args": [], "kwargs": {}}', callback_url=url)
    ids = [(await store.enqueue(stub, [new], 100))[0] for _ in range(n)]
    for _ in range(n):
        await finish(store, await start(store, stub), result="{}")
    return ids


async def callback_state(store: Store, task_id: str) -> tuple[str, int]:
    driver = store.driver  # type: ignore[attr-defined]
    rows = await driver.read(
        lambda tx: tx.execute("SELECT state, attempts FROM callbacks WHERE task_id = ?", [task_id])
    )
    return str(rows[0][0]), int(rows[0][1])


async def test_a_huge_answer_is_read_up_to_64_kib_then_dropped(
    store: Store, alice: Tenant, receivers: Callable[[Behaviour], RawReceiver]
) -> None:
    def huge(conn: socket.socket) -> None:
        # Announces 1.5 GB, sends 128 KiB, then never sends more: reading it all would wait.
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1500000000\r\n\r\n")
        conn.sendall(b"x" * 128 * 1024)
        receiver.stop.wait(30)

    receiver = receivers(huge)
    [task_id] = await callbacks_to(store, alice, receiver.url)
    sender = CallbackSender(store, CallbackSettings(http_timeout_s=20))
    began = time.monotonic()
    try:
        assert await asyncio.wait_for(sender.run_once(), 10) == 1
    finally:
        await sender.aclose()
    assert time.monotonic() - began < 5
    assert await callback_state(store, task_id) == ("DELIVERED", 1)


async def test_a_dripping_receiver_is_cut_at_the_total_deadline(
    store: Store, alice: Tenant, receivers: Callable[[Behaviour], RawReceiver]
) -> None:
    def drip(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        while not receiver.stop.wait(0.2):  # a byte per 0.2 s: each read is quick
            conn.sendall(b"a")

    receiver = receivers(drip)
    [task_id] = await callbacks_to(store, alice, receiver.url)
    sender = CallbackSender(store, CallbackSettings(http_timeout_s=5, deadline_s=1.5))
    began = time.monotonic()
    try:
        assert await asyncio.wait_for(sender.run_once(), 10) == 1
    finally:
        await sender.aclose()
    assert 1.4 < time.monotonic() - began < 4
    state, attempts = await callback_state(store, task_id)
    assert (state, attempts) == ("PENDING", 1)  # retried later, as any failed delivery


async def test_one_tenants_slow_receivers_do_not_delay_another_tenant(
    store: Store, alice: Tenant, receivers: Callable[[Behaviour], RawReceiver]
) -> None:
    def slow(conn: socket.socket) -> None:
        receiver_slow.stop.wait(8)
        ok(conn)

    receiver_slow = receivers(slow)
    receiver_fast = receivers(ok)
    bob = await tenant(store, "bob")
    # Alice's twelve callbacks are due first; each takes 8 s to answer (long, so that the
    # checks below hold on a loaded machine too).
    await callbacks_to(store, alice, receiver_slow.url, 12)
    [bob_task] = await callbacks_to(store, bob, receiver_fast.url)
    sender = CallbackSender(store, CallbackSettings(tick_s=60))
    stop = asyncio.Event()
    began = time.monotonic()
    loop = asyncio.create_task(sender.run(stop))
    try:
        deadline = time.monotonic() + 15
        while not receiver_fast.arrivals and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert receiver_fast.arrivals, "bob's callback never came"
        assert receiver_fast.arrivals[0][0] - began < 6  # not after alice's 8 s
        assert bob_task.encode() in receiver_fast.arrivals[0][1]
        # Alice has 8 in flight, no more; the other 4 start as her slots free.
        while len(receiver_slow.arrivals) < 8 and time.monotonic() - began < 6:
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert len(receiver_slow.arrivals) == 8
        deadline = time.monotonic() + 20
        while len(receiver_slow.arrivals) < 12 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert len(receiver_slow.arrivals) == 12
    finally:
        receiver_slow.stop.set()
        stop.set()
        await asyncio.wait_for(loop, 15)
        await sender.aclose()


async def test_a_new_callback_starts_when_a_slot_frees_not_after_the_batch(
    store: Store, alice: Tenant, receivers: Callable[[Behaviour], RawReceiver]
) -> None:
    slow_release = threading.Event()

    def slow(conn: socket.socket) -> None:
        slow_release.wait(6)
        ok(conn)

    receiver_slow = receivers(slow)
    receiver_fast = receivers(ok)
    # One slow delivery in flight, then a callback of the same tenant comes due.
    await callbacks_to(store, alice, receiver_slow.url)
    sender = CallbackSender(store, CallbackSettings(tick_s=60))
    stop = asyncio.Event()
    loop = asyncio.create_task(sender.run(stop))
    try:
        deadline = time.monotonic() + 5
        while not receiver_slow.arrivals and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        began = time.monotonic()
        await callbacks_to(store, alice, receiver_fast.url)
        while not receiver_fast.arrivals and time.monotonic() < began + 10:
            await asyncio.sleep(0.02)
        assert receiver_fast.arrivals and receiver_fast.arrivals[0][0] - began < 2
    finally:
        slow_release.set()
        stop.set()
        await asyncio.wait_for(loop, 15)
        await sender.aclose()


async def test_conveyor_signature_covers_id_and_status(
    store: Store, alice: Tenant, receivers: Callable[[Behaviour], RawReceiver]
) -> None:
    receiver = receivers(ok)
    [task_id] = await callbacks_to(store, alice, receiver.url)
    sender = CallbackSender(store)
    try:
        assert await sender.run_once() == 1
    finally:
        await sender.aclose()
    [(_, raw)] = receiver.arrivals
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = {
        k.strip().lower().decode(): v.strip().decode()
        for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
    }
    secret = alice.workspace.signing_secret.encode()

    def sign(*parts: str) -> str:
        message = ":".join([base64.b64encode(body).decode(), *parts])
        return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()

    timestamp = headers["x-task-timestamp"]
    assert headers["x-task-signature"] == sign(timestamp)  # Beam's, unchanged
    assert headers["x-conveyor-signature"] == sign(timestamp, task_id, "COMPLETE")
    assert headers["x-conveyor-signature"] != sign(timestamp, task_id, "FAILED")


def test_receiver_helper_parses() -> None:
    # The raw receiver speaks HTTP well enough for httpx.
    receiver = RawReceiver(ok)
    try:
        assert httpx.post(receiver.url, content=b"hi").text == "ok"
    finally:
        receiver.close()
