"""Enqueue bodies → the tasks to insert: one place for the gateway's routes (``invoke.py``) and
the direct producer (``conveyor.direct``), so both store the same payload for the same call.

A body is a JSON object. With ``args`` (a list) and/or ``kwargs`` (an object) those are the
call's arguments and other top-level keys join the keyword arguments; without them every
top-level key is a keyword argument. ``callback_url`` is taken out and kept on the task.
Plain (no web framework); a mistake is ``BadRequest`` (HTTP 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from conveyor.server.gateway.refusals import BadRequest
from conveyor.server.store.records import NewTask

#: Tasks a batch (or cancel) call may name (DESIGN A13).
MAX_TASKS_PER_CALL = 1000


def parse_call(
    body: Mapping[str, Any],
    default_callback_url: str | None = None,
    idempotency_key: str | None = None,
    *,
    allow_callback_url: bool = True,
    run_at: int | None = None,
) -> NewTask:
    """One request body → the task to insert (not started before ``run_at``); ``BadRequest``
    names what is wrong. Without ``allow_callback_url`` a ``callback_url`` key is dropped
    (not passed to the handler)."""
    fields = dict(body)
    callback_url = fields.pop("callback_url", None)
    if not allow_callback_url:
        callback_url = None
    if callback_url is not None and not _is_http_url(callback_url):
        raise BadRequest(f"callback_url must be an http(s) URL, got {callback_url!r}")
    if "args" in fields or "kwargs" in fields:
        args = fields.pop("args", [])
        kwargs = fields.pop("kwargs", {})
        if not isinstance(args, list):
            raise BadRequest("args must be a list")
        if not isinstance(kwargs, dict):
            raise BadRequest("kwargs must be an object")
        clash = sorted(set(kwargs) & set(fields))
        if clash:
            raise BadRequest(f"keyword arguments given twice: {', '.join(clash)}")
        kwargs = {**fields, **kwargs}
    else:
        args, kwargs = [], fields
    payload = orjson.dumps({"args": args, "kwargs": kwargs}).decode()
    return NewTask(
        payload=payload,
        callback_url=callback_url or default_callback_url,
        idempotency_key=idempotency_key,
        run_at=run_at,
    )


def parse_batch(
    body: Mapping[str, Any],
    default_callback_url: str | None = None,
    idempotency_key: str | None = None,
    *,
    allow_callback_url: bool = True,
    run_at: int | None = None,
) -> list[NewTask]:
    """``{"tasks": [<body>, ...]}`` → its tasks; an ``idempotency_key`` applies per position
    (``<key>#<index>``), ``run_at`` to each."""
    items = body.get("tasks")
    if not isinstance(items, list):
        raise BadRequest('body must be {"tasks": [<task body>, ...]}')
    if len(items) > MAX_TASKS_PER_CALL:
        raise BadRequest(
            f"a batch names at most {MAX_TASKS_PER_CALL} tasks, got {len(items)}"
        )
    tasks = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRequest(f"tasks[{index}] must be a JSON object")
        try:
            tasks.append(
                parse_call(
                    item,
                    default_callback_url,
                    f"{idempotency_key}#{index}" if idempotency_key else None,
                    allow_callback_url=allow_callback_url,
                    run_at=run_at,
                )
            )
        except BadRequest as exc:
            raise BadRequest(f"tasks[{index}]: {exc.message}") from None
    return tasks


def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.netloc)
