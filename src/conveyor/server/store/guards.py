"""The SQL of the state machine: status lists for ``WHERE status IN (...)``.

Every store write of a status is guarded by :func:`guard_sql`, so it can only follow an arc of
``conveyor.tasks.TRANSITIONS``. The lists are built only from enum values, never from user
input, so they are safe to inline.
"""

from __future__ import annotations

from conveyor.tasks import TaskStatus, sources_of


def sql_list(statuses: frozenset[TaskStatus]) -> str:
    """SQL list literal of ``statuses``, e.g. ``('PENDING','RETRY')``."""
    return "(" + ",".join(f"'{s.value}'" for s in sorted(statuses)) + ")"


def guard_sql(dst: TaskStatus) -> str:
    """SQL list literal of the statuses allowed to move to ``dst``."""
    return sql_list(sources_of(dst))
