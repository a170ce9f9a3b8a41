"""The HTTP client side every conveyor row and the no-op HTTP floor share: one keep-alive
``http.client`` connection per client (TCP_NODELAY), and the 8-client method (forked client
processes that start at one agreed instant).

httpx costs about 0.85 ms more per request on this machine (1.23 against 0.38 ms for
``GET /healthz``), which is more than the server spends on the request.
"""

from __future__ import annotations

import http.client
import multiprocessing
import socket
import time
from collections.abc import Sequence
from typing import Any

import orjson

#: Concurrent clients of the "8 concurrent clients" single-enqueue workload.
CLIENTS = 8


class KeepAlive:
    """One keep-alive HTTP/1.1 connection that speaks JSON. The server closes a connection
    idle for 5 s (uvicorn's default), so one idle for 4 s is replaced before it is used."""

    IDLE_S = 4.0

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._connect()

    def _connect(self) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        self.conn.connect()
        assert self.conn.sock is not None
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.used = time.monotonic()

    def call(self, method: str, path: str, body: Any = None) -> Any:
        if time.monotonic() - self.used > self.IDLE_S:
            self.conn.close()
            self._connect()
        payload = orjson.dumps(body) if body is not None else None
        self.conn.request(method, path, body=payload, headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        self.used = time.monotonic()
        if response.status != 200:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:200]!r}")
        return orjson.loads(data)

    def close(self) -> None:
        self.conn.close()


def _enqueue_share(job: tuple[int, str, str, float, Sequence[int]]) -> tuple[list[str], float]:
    """One client process of the concurrent workload: its share, from a common start."""
    port, token, path, start, args = job
    client = KeepAlive(port, token)
    while time.time() < start:
        time.sleep(0.0005)
    ids = [client.call("POST", path, {"args": [i]})["task_id"] for i in args]
    ended = time.time()
    client.close()
    return ids, ended


def enqueue_concurrent(port: int, token: str, path: str,
                       args: Sequence[int]) -> tuple[list[str], float]:
    """``CLIENTS`` forked processes, each with its own keep-alive connection, ``POST path`` one
    task per call; returns the ids and the seconds from the common start to the last reply."""
    shares = [list(args[k::CLIENTS]) for k in range(CLIENTS)]
    start = time.time() + 1.0  # every process is up and connected by then
    with multiprocessing.get_context("fork").Pool(CLIENTS) as pool:
        done = pool.map(_enqueue_share, [(port, token, path, start, share) for share in shares])
    return [i for ids, _ in done for i in ids], max(ended for _, ended in done) - start
