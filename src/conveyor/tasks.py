"""The one task state machine: statuses, the transition table, and the task record.

Every store writes a status only through a guarded transition derived from
:data:`TRANSITIONS` (the SQL is ``conveyor.server.store.guards``), so a terminal status can
never be overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class TaskStatus(StrEnum):
    #: Enqueued, waiting for a container.
    PENDING = "PENDING"
    #: An attempt is running in a container.
    RUNNING = "RUNNING"
    #: The handler returned.
    COMPLETE = "COMPLETE"
    #: The last attempt failed in a retryable way; waiting for the next attempt.
    RETRY = "RETRY"
    #: Cancelled by the user.
    CANCELLED = "CANCELLED"
    #: An attempt ran longer than the queue's ``timeout``.
    TIMEOUT = "TIMEOUT"
    #: Waited longer than ``ttl`` without being started.
    EXPIRED = "EXPIRED"
    #: The handler raised a non-retryable exception, or retries are used up.
    FAILED = "FAILED"

    @classmethod
    def parse(cls, text: str) -> TaskStatus:
        """Parse a status name case-insensitively; ``ERROR`` is a synonym of ``FAILED``."""
        name = text.strip().upper()
        if name == "ERROR":
            return cls.FAILED
        try:
            return cls(name)
        except ValueError:
            allowed = ", ".join(s.value for s in cls)
            raise ValueError(f"unknown status {text!r}; expected one of {allowed}") from None


TERMINAL: frozenset[TaskStatus] = frozenset(
    {
        TaskStatus.COMPLETE,
        TaskStatus.CANCELLED,
        TaskStatus.TIMEOUT,
        TaskStatus.EXPIRED,
        TaskStatus.FAILED,
    }
)

#: Statuses counted as waiting to run (``stats.queue_depth``).
WAITING: frozenset[TaskStatus] = frozenset({TaskStatus.PENDING, TaskStatus.RETRY})

#: Statuses counted against ``max_pending_tasks``.
IN_FLIGHT: frozenset[TaskStatus] = WAITING | {TaskStatus.RUNNING}

#: DESIGN A2: every allowed arc. Nothing leaves a terminal status.
TRANSITIONS: Mapping[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.PENDING: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED, TaskStatus.EXPIRED}),
    TaskStatus.RUNNING: frozenset(
        {
            TaskStatus.COMPLETE,
            TaskStatus.RETRY,
            TaskStatus.FAILED,
            TaskStatus.TIMEOUT,
            TaskStatus.CANCELLED,
        }
    ),
    TaskStatus.RETRY: frozenset({TaskStatus.RUNNING, TaskStatus.CANCELLED, TaskStatus.EXPIRED}),
    TaskStatus.COMPLETE: frozenset(),
    TaskStatus.CANCELLED: frozenset(),
    TaskStatus.TIMEOUT: frozenset(),
    TaskStatus.EXPIRED: frozenset(),
    TaskStatus.FAILED: frozenset(),
}


def is_terminal(status: TaskStatus) -> bool:
    return status in TERMINAL


def can_transition(src: TaskStatus, dst: TaskStatus) -> bool:
    return dst in TRANSITIONS[src]


def sources_of(dst: TaskStatus) -> frozenset[TaskStatus]:
    """Statuses from which ``dst`` may be reached: the ``WHERE status IN (...)`` guard."""
    return frozenset(src for src, dsts in TRANSITIONS.items() if dst in dsts)

