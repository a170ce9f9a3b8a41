"""The no-op HTTP floor: a minimal ASGI app on conveyor's server stack (uvicorn, httptools, uvloop).

    python -m bench.peers.floor_app --port 8792

It reads the whole request body and answers a tiny JSON body: ``{"task_id": "<n>"}`` for a POST
(a fresh number each time, so the benchmark's enqueue code checks ids as it does for conveyor),
``{"status": "COMPLETE"}`` for anything else. No routing, no auth, no validation: what is left is
the price of one HTTP request on this machine.
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_ids = itertools.count()
_HEADERS = [(b"content-type", b"application/json")]
_STATUS = b'{"status":"COMPLETE"}'


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the body, as a real handler would
        message = await receive()
        more = bool(message.get("more_body", False))
    body = b'{"task_id":"%d"}' % next(_ids) if scope["method"] == "POST" else _STATUS
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_HEADERS, (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, http="httptools", loop="uvloop",
                access_log=False, log_level="warning", lifespan="on", timeout_keep_alive=5)


if __name__ == "__main__":
    main()
