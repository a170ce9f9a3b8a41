"""The HTTP connection: uvicorn's httptools protocol with the bounds of DESIGN A13.

uvicorn bounds none of these with httptools (``h11_max_incomplete_event_size`` is for h11
only; its keep-alive timer runs only between requests, never while one is half sent; its
``limit_concurrency`` counts requests whose head is complete, so half-sent ones are not
counted), so this protocol does, before the parser sees the bytes:

- a request's line and headers: at most ``max_header_bytes``, else 431 and the connection
  closes (after ``LINGER_S`` of reading and dropping what the client still sends, so that it
  reads the 431 rather than a reset). At most that many bytes (plus the rest of one read)
  reach the parser, so a huge header costs its reader little and the other clients nothing.
- they must arrive within ``header_timeout_s`` of the connection (first request) or of the
  request's first byte (next ones on a kept-alive connection), else the connection closes:
  a client that sends half a request holds a file descriptor that long at most.
- at most ``max_connections`` connections are open; one more gets 503 and is closed at once.

The ASGI app checks the header size again (``dispatch``), for any other server it runs under.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from conveyor.server.gateway.settings import GatewaySettings

#: A refused connection is read (and what comes dropped) this long before it closes.
LINGER_S = 2.0


def limited_protocol(settings: GatewaySettings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn builds per connection, with ``settings``' bounds."""

    class Limited(LimitedHttpToolsProtocol):
        max_header_bytes = settings.max_header_bytes
        header_timeout_s = settings.header_timeout_s
        max_connections = settings.max_connections

    return Limited


def plain_answer(code: int, reason: str, message: str) -> bytes:
    """A whole HTTP/1.1 answer ``{"error": message}`` that closes the connection."""
    body = orjson.dumps({"error": message})
    return (
        f"HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode() + body


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    max_header_bytes: ClassVar[int] = 64 * 1024
    header_timeout_s: ClassVar[float] = 10.0
    max_connections: ClassVar[int] = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # the bytes coming are a request's line and headers
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False  # answered 431: what comes now is dropped unread

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        full = len(self.connections) >= self.max_connections
        super().connection_made(transport)
        if full:
            transport.write(plain_answer(503, "Service Unavailable", "too many connections"))
            transport.close()
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            room = self.max_header_bytes - self._head_bytes
            if len(data) > room:
                head, data = data[:room], data[room:]
                self._head_bytes += len(head)
                if head:
                    super().data_received(head)
                if self.transport.is_closing():
                    return
                if self._in_head:
                    self._refuse_head()
                    return
            else:
                self._head_bytes += len(data)
        if data:
            super().data_received(data)

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    # -- bounds ----------------------------------------------------------------------------
    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _answering(self) -> bool:
        """A response of an earlier request on this connection is still being sent."""
        return self.cycle is not None and not self.cycle.response_complete

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._answering():
            message = f"request headers not received within {self.header_timeout_s:g} s"
            self.transport.write(plain_answer(408, "Request Timeout", message))
        self.transport.close()

    def _refuse_head(self) -> None:
        self._disarm()
        if self._answering():
            self.transport.close()
            return
        self._refused = True
        message = f"request headers over {self.max_header_bytes} bytes"
        self.transport.write(plain_answer(431, "Request Header Fields Too Large", message))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)
