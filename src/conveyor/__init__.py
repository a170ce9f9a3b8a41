"""Conveyor: a self-hosted task-queue platform for Python.

``Client``, ``AsyncClient`` and ``Task`` load on first use, so ``import conveyor`` (done by
every handler file and worker process) does not import the HTTP stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from conveyor.errors import (
    ClientError,
    ConfigError,
    ConnectionFailed,
    ConveyorError,
    DirectCallError,
    HTTPError,
    InvalidOutput,
    InvalidTransition,
    NotConfigured,
    NotFound,
    OutputTooLarge,
    PendingLimitExceeded,
    StoreError,
    StoreUnavailable,
    TaskCancelled,
    TaskError,
    TaskExpired,
    TaskFailed,
    TaskTimedOut,
    WaitTimeout,
)
from conveyor.sdk.decorator import QueueDepthAutoscaler, TaskContext, TaskQueue, task_queue
from conveyor.sdk.outputs import Output
from conveyor.tasks import TaskStatus

if TYPE_CHECKING:
    from conveyor.sdk.async_client import AsyncClient
    from conveyor.sdk.client import Client, Task

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "ConfigError",
    "ConnectionFailed",
    "ConveyorError",
    "DirectCallError",
    "HTTPError",
    "InvalidOutput",
    "InvalidTransition",
    "NotConfigured",
    "NotFound",
    "Output",
    "OutputTooLarge",
    "PendingLimitExceeded",
    "QueueDepthAutoscaler",
    "StoreError",
    "StoreUnavailable",
    "Task",
    "TaskCancelled",
    "TaskContext",
    "TaskError",
    "TaskExpired",
    "TaskFailed",
    "TaskQueue",
    "TaskStatus",
    "TaskTimedOut",
    "WaitTimeout",
    "task_queue",
]

_FROM_CLIENT = frozenset({"AsyncClient", "Client", "Task"})


def __getattr__(name: str) -> Any:
    if name in _FROM_CLIENT:
        from conveyor import client

        return getattr(client, name)
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
