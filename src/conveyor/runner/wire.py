"""The pipe protocol between an agent and its worker processes.

Frames are a 4-byte big-endian length followed by a JSON object. The agent writes to the
worker's stdin; the worker writes to its original stdout, which it keeps for frames only
(what handlers write to stdout and stderr comes as ``log`` frames). Messages, by ``op``:

agent → worker
    ``init``  ``{"config": <QueueConfig dict>, "code_root": str, "stub_id": str,
    "stub_type": str, "container_id": str}`` — the first frame; the worker imports the handler,
    runs ``on_start`` and answers ``ready`` (or ``init_failed`` and exits).
    ``run``   ``{"task_id", "fence": int, "attempt": int, "payload": str (JSON
    {"args", "kwargs"}), "callback_url": str | None, "timeout": float}``.
    ``stop``  ``{}`` — finish and exit.

The end of the worker's stdin means the agent is gone: the worker exits at once, even in the
middle of a task (its result would have no reader).

worker → agent
    ``ready``       ``{"pid": int}``.
    ``init_failed`` ``{"error": {"type", "message", "traceback"}}``.
    ``started``     ``{"task_id", "fence", "at": float}`` — the handler is about to be called.
    ``done``        ``{"task_id", "fence", "status": "COMPLETE" | "FAILED", "result": str | None
    (JSON text), "error": {"type", "message", "traceback"} | None, "retryable": bool,
    "outputs": [{"name": str, "data": str (base64)}]}``.
    ``log``         ``{"task_id": str | None, "lines": [[stream (1 stdout, 2 stderr), at: float,
    text: str], ...]}`` — lines the process wrote (``conveyor.runner.capture``): of the task
    named, whose last lines come before its ``done``; of the container itself when None.
"""

from __future__ import annotations

import struct
from typing import IO, Any

import orjson

_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 30
#: Environment variable holding the pid of the agent that spawned the worker (see
#: ``conveyor.runner.main``): a worker whose parent is another process was orphaned at birth.
AGENT_PID_ENV = "CONVEYOR_AGENT_PID"


def encode(message: dict[str, Any]) -> bytes:
    body = orjson.dumps(message)
    return _HEADER.pack(len(body)) + body


def decode_length(header: bytes) -> int:
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is over the limit")
    return int(length)


def decode(body: bytes) -> dict[str, Any]:
    value = orjson.loads(body)
    if not isinstance(value, dict):
        raise ValueError("frame is not a JSON object")
    return value


def read_frame(stream: IO[bytes]) -> dict[str, Any] | None:
    """Blocking read of one frame (worker side); None at end of stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    length = decode_length(header)
    body = stream.read(length)
    if len(body) < length:  # the writer died in the middle of a frame
        return None
    return decode(body)


def write_frame(stream: IO[bytes], message: dict[str, Any]) -> None:
    stream.write(encode(message))
    stream.flush()
