"""Refuse request bodies over the size limit, by ``Content-Length`` and while reading."""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import Message, Receive, Scope

from conveyor.server.gateway.errors import BodyTooLarge
from conveyor.server.gateway.responses import error_response


class BodyLimit:
    """A ``Content-Length`` over ``max_bytes`` is answered 413 at once; otherwise the bytes are
    counted as the route reads them and ``BodyTooLarge`` (mapped to 413) is raised past the
    limit, which catches chunked bodies and lying headers."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def refusal(self, scope: Scope) -> Response | None:
        """The 413 answer when the declared length is over the limit, else None."""
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            return error_response(413, self._message())
        return None

    def counted(self, receive: Receive) -> Receive:
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self._message())
            return message

        return limited_receive

    def _message(self) -> str:
        return f"request body is larger than {self.max_bytes} bytes"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
