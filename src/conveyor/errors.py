"""The one exception tree of conveyor.

::

    ConveyorError
    ├── ConfigError                 invalid decorator value, settings or store URL
    ├── DirectCallError             a task queue was called like a plain function
    ├── InvalidOutput               an ``Output`` with a bad name, path or data
    ├── PartEnded                   the gateway or the agent of a process ended unexpectedly
    ├── StartupError                a process could not start: busy port, store not opened
    ├── StoreError                  the store failed (driver errors are wrapped here)
    │   ├── StoreUnavailable        the store cannot be reached (HTTP 503)
    │   ├── NotFound                unknown or foreign id (HTTP 404)
    │   ├── InvalidTransition       a guarded status write matched no row (HTTP 409)
    │   ├── PendingLimitExceeded    max_pending_tasks reached (HTTP 429)
    │   ├── StaleRoute              a queue's latest version changed since its look-up
    │   ├── VersionStopped          a stopped version takes no new tasks (HTTP 409)
    │   ├── VersionBusy             a version with unfinished tasks cannot be deleted (HTTP 409)
    │   └── OutputTooLarge          an output over the size limit (HTTP 413)
    ├── TaskError                   a task did not complete (raised by ``Task.result``)
    │   ├── TaskFailed
    │   ├── TaskTimedOut
    │   ├── TaskCancelled
    │   └── TaskExpired
    └── ClientError                 talking to a gateway failed
        ├── ConnectionFailed        the gateway cannot be reached
        ├── NotConfigured           no URL/token configured
        ├── HTTPError               the gateway answered an error (``status_code``, message)
        └── WaitTimeout             ``result(timeout=…)`` ran out before a terminal status

A class's docstring is its default message.
"""

from __future__ import annotations

from typing import Any


class ConveyorError(Exception):
    """Conveyor failed."""

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or "").strip().splitlines()[0]
        super().__init__(self.message)


class ConfigError(ConveyorError, ValueError):
    """Invalid configuration."""


class DirectCallError(ConveyorError, TypeError):
    """A task queue is not called directly: ``.put()`` enqueues, ``.local()`` runs it here."""


class InvalidOutput(ConveyorError, ValueError):
    """Invalid output."""


class PartEnded(ConveyorError):
    """A part of this process (its gateway or its agent) ended unexpectedly."""


class StartupError(ConveyorError):
    """The process could not start."""


class StoreError(ConveyorError):
    """The store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached."""


class NotFound(StoreError):
    """Not found."""


class StaleRoute(StoreError):
    """The queue's latest version changed since it was looked up; look it up again."""


class VersionStopped(StoreError):
    """The version is stopped."""

    def __init__(self, name: str, version: int) -> None:
        super().__init__(f"version v{version} of {name} is stopped")


class VersionBusy(StoreError):
    """The version still has unfinished tasks."""


class InvalidTransition(StoreError):
    """The task is not in a status that allows this change."""


class PendingLimitExceeded(StoreError):
    """Exceeded max pending tasks."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"exceeded max pending tasks: {limit}")


class OutputTooLarge(StoreError):
    """An output is larger than the limit."""


class TaskError(ConveyorError):
    """The task did not complete."""

    def __init__(self, message: str | None = None, task: Any = None) -> None:
        self.task = task
        super().__init__(message)


class TaskFailed(TaskError):
    """The task failed."""


class TaskTimedOut(TaskError):
    """The task timed out."""


class TaskCancelled(TaskError):
    """The task was cancelled."""


class TaskExpired(TaskError):
    """The task expired before it started."""


class ClientError(ConveyorError):
    """Talking to the gateway failed."""


class ConnectionFailed(ClientError):
    """Cannot reach the conveyor gateway."""


class NotConfigured(ClientError):
    """No gateway configured: set CONVEYOR_URL and CONVEYOR_TOKEN or ~/.conveyor/config.toml."""


class HTTPError(ClientError):
    """The gateway answered with an error."""

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        super().__init__(f"{status_code}: {message}")


class WaitTimeout(ClientError):
    """Timed out waiting for the task to finish."""
