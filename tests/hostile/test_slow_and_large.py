"""A real ``conveyor server``: clients that trickle their request do not block the others, and
bodies over the limit get 413, whether declared by Content-Length or streamed chunked."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.server.store import open_store
from tests.faults.cluster import Proc, conveyor_argv, free_port, processes
from tests.gateway.conftest import Tenant, deploy

pytestmark = pytest.mark.slow

LIMIT = 10 * 1024 * 1024  # the server's default body limit


@pytest.fixture
async def tenant(tmp_path: Path) -> Tenant:
    store = open_store(f"sqlite:///{tmp_path / 'conveyor.db'}")
    await store.open()
    try:
        workspace = await store.ensure_workspace("slow")
        tenant = Tenant(workspace, await store.create_token(workspace.id))
        await deploy(store, tenant, "echo", max_pending_tasks=100000)
        return tenant
    finally:
        await store.close()


@pytest.fixture
def server(tmp_path: Path, tenant: Tenant) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Proc(
        "gateway",
        conveyor_argv("server", "--store", f"sqlite:///{tmp_path / 'conveyor.db'}",
                      "--port", str(port)),
        tmp_path / "gateway", dict(os.environ), url=url,
    )
    with processes([proc]):
        proc.start()
        yield url


def _trickler(port: int, token: str, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = (
        "POST /taskqueue/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode())
    return sock


async def test_slow_bodies_do_not_block_other_clients(server: str, tenant: Tenant) -> None:
    port = int(server.rsplit(":", 1)[1])
    body = b'{"x": "' + b"a" * 40 + b'"}'
    slow = [_trickler(port, tenant.token, body) for _ in range(30)]
    try:
        latencies = []
        async with httpx.AsyncClient(base_url=server, headers=tenant.auth, timeout=10) as fast:
            for i in range(len(body)):
                for sock in slow:  # one byte per slow client, then a normal request
                    sock.sendall(body[i : i + 1])
                begun = time.monotonic()
                response = await fast.post("/taskqueue/echo", json={"x": i})
                latencies.append(time.monotonic() - begun)
                assert response.status_code == 200
                await asyncio.sleep(0.05)
        assert max(latencies) < 2.0, latencies
        for sock in slow:  # the trickled requests complete normally in the end
            answer = sock.recv(4096).decode()
            assert answer.startswith("HTTP/1.1 200"), answer
    finally:
        for sock in slow:
            sock.close()


async def test_declared_oversized_body_is_413_before_it_is_sent(
    server: str, tenant: Tenant
) -> None:
    port = int(server.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(
            (
                "POST /taskqueue/echo HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {tenant.token}\r\nContent-Length: {LIMIT + 1}\r\n\r\n"
            ).encode()
        )
        answer = ""
        while '"error"' not in answer:  # headers and body may arrive in separate reads
            chunk = sock.recv(4096).decode()
            if not chunk:
                break
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"error"' in answer


async def _chunks(total: int) -> AsyncIterator[bytes]:
    piece = b" " * (256 * 1024)
    sent = 0
    while sent < total:
        yield piece
        sent += len(piece)


async def test_streamed_oversized_body_is_413(server: str, tenant: Tenant) -> None:
    async with httpx.AsyncClient(base_url=server, headers=tenant.auth, timeout=30) as client:
        try:
            response = await client.post("/taskqueue/echo", content=_chunks(LIMIT + 1024 * 1024))
        except httpx.TransportError:
            pytest.fail("the server cut the connection instead of answering 413")
        assert response.status_code == 413
        assert "larger than" in response.json()["error"]
        # The gateway is still fine afterwards.
        ok = await client.post("/taskqueue/echo", json={"x": 1})
        assert ok.status_code == 200
