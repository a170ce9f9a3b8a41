"""Connections over a real uvicorn, configured as ``conveyor serve`` configures it (DESIGN
A13): request headers at most 64 KiB (431) and read within a time limit (the connection is
dropped), at most ``max_connections`` open; the others are served meanwhile."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx

from conveyor.server.app import server_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.store.base import Store
from tests.gateway.served import served


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


async def _recv_all(sock: socket.socket, timeout: float) -> bytes:
    """What the server sends until it closes, read on a thread (the server is in this loop)."""

    def read() -> bytes:
        sock.settimeout(timeout)
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
        return data

    return await asyncio.to_thread(read)


async def test_a_100_kib_header_gets_431_and_others_are_served(store: Store) -> None:
    async with served(server_app(store, GatewaySettings())) as url:
        sock = socket.create_connection(("127.0.0.1", _port(url)))
        with sock:
            head = (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                    + b"a" * (100 * 1024) + b"\r\n\r\n")
            await asyncio.to_thread(sock.sendall, head)
            answer = await _recv_all(sock, 20)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
        assert b'{"error":"request headers over 65536 bytes"}' in answer
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            assert (await http.get("/healthz")).status_code == 200
            # Headers under the limit are served as ever.
            fine = await http.get("/healthz", headers={"X-Fine": "b" * 30_000})
            assert fine.status_code == 200


async def test_a_header_that_never_ends_is_cut_at_the_limit(store: Store) -> None:
    """A client streaming an endless header is answered 431 once it has sent the limit,
    without the server waiting for (or parsing) the rest."""
    async with served(server_app(store, GatewaySettings())) as url:
        sock = socket.create_connection(("127.0.0.1", _port(url)))
        with sock:
            await asyncio.to_thread(
                sock.sendall, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000
            )
            answer = await _recv_all(sock, 20)  # no end of headers was ever sent
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


async def test_a_half_sent_request_is_dropped_after_the_header_timeout(store: Store) -> None:
    settings = GatewaySettings(header_timeout_s=1.0)
    async with served(server_app(store, settings)) as url:
        port = _port(url)
        half = socket.create_connection(("127.0.0.1", port))
        silent = socket.create_connection(("127.0.0.1", port))
        with half, silent:
            half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n")
            begun = time.monotonic()
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                assert (await http.get("/healthz")).status_code == 200  # others meanwhile
            answer, nothing = await asyncio.gather(_recv_all(half, 30), _recv_all(silent, 30))
            waited = time.monotonic() - begun
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert nothing.startswith(b"HTTP/1.1 408 ") or nothing == b""
        assert waited < 25  # closed by the server, not by our read timeout


async def test_a_kept_alive_connection_times_out_a_half_sent_second_request(
    store: Store,
) -> None:
    settings = GatewaySettings(header_timeout_s=1.0)
    async with served(server_app(store, settings)) as url:
        sock = socket.create_connection(("127.0.0.1", _port(url)))
        with sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                         b"GET /healthz HTTP/1.1\r\n")
            answer = await _recv_all(sock, 30)
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert b"HTTP/1.1 408 " in answer


async def test_connections_over_the_limit_are_refused(store: Store) -> None:
    settings = GatewaySettings(max_connections=5, header_timeout_s=60)
    async with served(server_app(store, settings)) as url:
        port = _port(url)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
        try:
            extra = socket.create_connection(("127.0.0.1", port))
            with extra:
                answer = await _recv_all(extra, 30)
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
            idle.pop().close()
            async with asyncio.timeout(30):
                while True:  # the freed place is taken once the server sees the close
                    try:
                        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                            response = await http.get("/healthz")
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code == 200:
                        break
                    await asyncio.sleep(0.1)
        finally:
            for sock in idle:
                sock.close()


async def test_the_app_refuses_large_headers_under_any_server(store: Store) -> None:
    """``dispatch`` checks the size too, for a server without the connection's bound."""
    transport = httpx.ASGITransport(server_app(store, GatewaySettings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        response = await http.get("/healthz", headers={"X-Big": "a" * (100 * 1024)})
        assert response.status_code == 431
        assert "error" in response.json()
        assert (await http.get("/healthz", headers={"X-Fine": "a" * 1000})).status_code == 200
