"""Records → the JSON the API answers (DESIGN A4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import orjson

from conveyor.clock import iso
from conveyor.error_info import ErrorInfo
from conveyor.errors import ConfigError
from conveyor.server.gateway.signing import LinkKeys
from conveyor.server.store.records import (
    AgentInfo,
    AttemptInfo,
    QueueSummary,
    ScheduleInfo,
    StoredLogLine,
    Stub,
    TaskRecord,
    TaskView,
)
from conveyor.tasks import TaskStatus


def task_json(
    view: TaskView, base_url: str, keys: LinkKeys, ttl_s: int, now: float
) -> dict[str, Any]:
    """The task status JSON, with absolute signed output URLs valid for ``ttl_s``."""
    task, stub = view.task, view.stub
    expires = int(now) + ttl_s
    return {
        "id": task.id,
        "status": task.status.value,
        "created_at": iso(task.created_at),
        "started_at": iso(task.started_at),
        "ended_at": iso(task.ended_at),
        "updated_at": iso(task.updated_at),
        "run_at": iso(task.run_at),
        "duration_s": duration_s(task),
        "container_id": task.container_id or "",
        "outputs": [
            {
                "name": output.name,
                "url": keys.url(base_url, output.id, output.name, expires),
                "expires_in": ttl_s,
            }
            for output in view.outputs
        ],
        "stats": {
            "active_containers": view.active_containers,
            "queue_depth": view.queue_depth,
        },
        "stub": stub_json(stub),
        "deployment": {"name": stub.name, "version": stub.version},
        "result": _parse(task.result),
        "error": _error(task.error),
        "attempts": task.attempt,
        "replay_of": task.replay_of,
    }


def duration_s(task: TaskRecord) -> float | None:
    """Seconds from the first start to the end; None until both are set."""
    if task.started_at is None or task.ended_at is None:
        return None
    return (task.ended_at - task.started_at) / 1_000_000


def attempt_json(info: AttemptInfo) -> dict[str, Any]:
    """One attempt of ``GET /v2/task/{id}/attempts`` (DESIGN A8)."""
    return {
        "attempt": info.attempt,
        "container_id": info.container_id,
        "started_at": iso(info.started_at),
        "ended_at": iso(info.ended_at),
        "outcome": info.outcome,
        "error": _error(info.error),
        "exit": None if info.exit is None else {"code": info.exit.code, "signal": info.exit.signal},
    }


def log_line_json(line: StoredLogLine) -> dict[str, Any]:
    """One kept line, as ``GET /v2/task/{id}/logs`` lists it and its stream sends it."""
    return {"attempt": line.attempt, "stream": line.stream, "timestamp": iso(line.at),
            "line": line.line}


def stub_json(stub: Stub) -> dict[str, Any]:
    return {
        "id": stub.id,
        "name": stub.name,
        "type": stub.type,
        "config": stub.config,
        "config_version": stub.config_version,
        "object_id": stub.object_id,
        "created_at": iso(stub.created_at),
        "updated_at": iso(stub.updated_at),
    }


def queue_json(summary: QueueSummary, agents: Sequence[AgentInfo]) -> dict[str, Any]:
    """A queue; ``agents`` (the live ones) say which of its versions something runs."""
    return {
        "name": summary.name,
        "versions": [
            {
                "version": v.version,
                "stub_id": v.stub_id,
                "type": v.type,
                "created_at": iso(v.created_at),
                "active": v.active,
                "agents": sum(agent.runs(v.stub_id, v.type) for agent in agents) if v.active else 0,
                "image": v.image,
                "builds": [
                    {"agent": agent.id, **agent.builds[v.stub_id]}
                    for agent in agents
                    if v.stub_id in agent.builds
                ],
            }
            for v in summary.versions
        ],
        # as ``Store.resolve_stub`` without a version: the highest active, else the highest
        "route_version": max((v.active, v.version) for v in summary.versions)[1],
        "queue_depth": summary.queue_depth,
        "active_containers": summary.active_containers,
        "counts": {status.value: summary.counts.get(status, 0) for status in TaskStatus},
    }


#: Upcoming ticks a schedule's JSON shows.
NEXT_TICKS = 3


def schedule_json(info: ScheduleInfo, now: int) -> dict[str, Any]:
    """A schedule as ``GET /v2/schedule/`` lists it: the version that ticks, its next ticks
    after ``now`` and its name's last tick. A config that no longer reads shows no times."""
    stub, last = info.stub, info.last
    try:
        config = stub.queue_config
        cron = config.cron()
    except ConfigError:
        config, cron = None, None
    return {
        "name": stub.name,
        "version": stub.version,
        "stub_id": stub.id,
        "type": stub.type,
        "when": None if config is None else config.when,
        "timezone": None if cron is None else cron.timezone,
        "next": [] if cron is None else [iso(t) for t in cron.after(now, NEXT_TICKS)],
        "last_tick": None if last is None else {
            "at": iso(last.tick_at),
            "stub_id": last.stub_id,
            "task_id": last.task_id,
            "catch_up": last.catch_up,
            "made_at": iso(last.made_at),
        },
    }


def invocation_url(base_url: str, name: str, version: int) -> str:
    return f"{base_url}/taskqueue/{quote(name, safe='')}/v{version}"


def _parse(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


def _error(text: str | None) -> dict[str, str] | None:
    return None if text is None else ErrorInfo.from_json(text).to_dict()
