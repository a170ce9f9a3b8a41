"""Conveyor: a self-hosted task-queue platform for Python.

``Client``, ``AsyncClient`` and ``Task`` load on first use, so ``import conveyor`` (done by
every handler file and worker process) does not import the HTTP stack.
"""

from __future__ import annotations

import importlib
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
from conveyor.image import Image
from conveyor.sdk.decorator import QueueDepthAutoscaler, TaskContext, TaskQueue, task_queue
from conveyor.sdk.outputs import Output
from conveyor.sdk.schedule import Schedule, schedule
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
    "Image",
    "InvalidOutput",
    "InvalidTransition",
    "NotConfigured",
    "NotFound",
    "Output",
    "OutputTooLarge",
    "PendingLimitExceeded",
    "QueueDepthAutoscaler",
    "Schedule",
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
    "schedule",
    "task_queue",
]

#: The lazily loaded names and their modules.
_LAZY = {
    "AsyncClient": "conveyor.sdk.async_client",
    "Client": "conveyor.sdk.client",
    "Task": "conveyor.sdk.client",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
