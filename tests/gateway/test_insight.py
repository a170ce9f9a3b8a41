"""Seeing into a task (DESIGN A8): its input, its attempts, a page of its logs, ``duration_s``;
the exact JSON on both stores, and a 400 that says what was expected for each bad value."""

from __future__ import annotations

import time
import uuid

import httpx
import orjson
import pytest

from conveyor.clock import iso, to_us
from conveyor.server.store.base import Store
from conveyor.server.store.records import (
    LogLimits,
    LogLine,
    LogStream,
    Outcome,
    ProcessExit,
    Stub,
    TaskRecord,
)
from conveyor.tasks import TaskStatus
from tests.gateway.conftest import Tenant, deploy, finish, start
from tests.gateway.test_tasks import ISO, enqueue

#: Instants the tests choose, to compare exact JSON: a whole second after every enqueue of the
#: run (a task is claimed no earlier than its enqueue, by the claimer's clock).
T0 = float(int(time.time()) + 86400)


async def append(
    store: Store, task: TaskRecord, *lines: tuple[LogStream, str], attempt: int = 1
) -> None:
    at = to_us(time.time())
    batch = [LogLine(task.id, attempt, stream, at + i, text)
             for i, (stream, text) in enumerate(lines)]
    await store.append_logs(batch, LogLimits())


async def get(http: httpx.AsyncClient, tenant: Tenant, path: str) -> httpx.Response:
    return await http.get(path, headers=tenant.auth)


async def claim_at(store: Store, stub: Stub, at: float) -> TaskRecord:
    (task,) = await store.claim(stub.id, "taskqueue-test-0001", 1, lease_s=60, now=at)
    return task


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"args": [1, "a"], "kwargs": {"w": 2}}, {"args": [1, "a"], "kwargs": {"w": 2}}),
        ({"path": "a.png", "width": 100}, {"args": [], "kwargs": {"path": "a.png", "width": 100}}),
        ({"args": [[1], {"x": None}], "callback_url": "http://cb.example/x"},
         {"args": [[1], {"x": None}], "kwargs": {}}),
        ({}, {"args": [], "kwargs": {}}),
    ],
)
async def test_input_is_what_the_handler_is_called_with(
    http: httpx.AsyncClient, store: Store, alice: Tenant, body: dict[str, object],
    expected: dict[str, object],
) -> None:
    await deploy(store, alice, "resize")
    task_id = await enqueue(http, alice, **body)
    response = await get(http, alice, f"/v2/task/{task_id}/input")
    assert response.status_code == 200, response.text
    assert response.json() == expected


async def test_attempts_oldest_first_with_outcome_error_and_exit(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize", max_retries=1)
    task_id = await enqueue(http, alice)
    path = f"/v2/task/{task_id}/attempts"
    assert (await get(http, alice, path)).json() == {"data": []}

    first = await claim_at(store, stub, T0)
    running = (await get(http, alice, path)).json()
    assert running == {"data": [{
        "attempt": 1, "container_id": "taskqueue-test-0001", "started_at": iso(to_us(T0)),
        "ended_at": None, "outcome": None, "error": None, "exit": None,
    }]}

    crash = {"type": "WorkerCrashed", "message": "killed by SIGKILL", "traceback": ""}
    (applied,) = await store.finish(
        [Outcome(first.id, first.fence, TaskStatus.FAILED, error=orjson.dumps(crash).decode(),
                 retryable=True, exit=ProcessExit(signal="SIGKILL"))],
        now=T0 + 1,
    )
    assert applied
    second = await claim_at(store, stub, T0 + 2)
    await store.finish([Outcome(second.id, second.fence, TaskStatus.COMPLETE, result="1")],
                       now=T0 + 3.5)
    response = await get(http, alice, path)
    assert response.status_code == 200
    assert response.json() == {"data": [
        {"attempt": 1, "container_id": "taskqueue-test-0001", "started_at": iso(to_us(T0)),
         "ended_at": iso(to_us(T0 + 1)), "outcome": "CRASHED", "error": crash,
         "exit": {"code": None, "signal": "SIGKILL"}},
        {"attempt": 2, "container_id": "taskqueue-test-0001",
         "started_at": iso(to_us(T0 + 2)), "ended_at": iso(to_us(T0 + 3.5)),
         "outcome": "COMPLETE", "error": None, "exit": None},
    ]}
    task = (await get(http, alice, f"/v2/task/{task_id}")).json()
    assert task["duration_s"] == 3.5  # from the first start to the end


async def test_an_earlier_attempts_error_is_kept(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize", max_retries=1)
    task_id = await enqueue(http, alice)
    errors = [{"type": "IOError", "message": f"try {n}", "traceback": "Traceback …"}
              for n in (1, 2)]
    for error in errors:
        record = await start(store, stub)
        await finish(store, record, TaskStatus.FAILED, error=orjson.dumps(error).decode(),
                     retryable=True)
    attempts = (await get(http, alice, f"/v2/task/{task_id}/attempts")).json()["data"]
    assert [(a["outcome"], a["error"]) for a in attempts] == [
        ("RETRY", errors[0]), ("FAILED", errors[1])
    ]
    assert all(ISO.match(a["ended_at"]) and a["exit"] is None for a in attempts)


async def test_duration_s_is_null_until_the_task_has_started_and_ended(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = await enqueue(http, alice)
    path = f"/v2/task/{task_id}/"
    assert (await get(http, alice, path)).json()["duration_s"] is None
    record = await claim_at(store, stub, T0)
    assert (await get(http, alice, path)).json()["duration_s"] is None
    await store.finish([Outcome(record.id, record.fence, TaskStatus.COMPLETE)], now=T0 + 0.25)
    assert (await get(http, alice, path)).json()["duration_s"] == 0.25
    cancelled = await enqueue(http, alice)
    await http.post("/v2/task/cancel/", json={"task_ids": [cancelled]}, headers=alice.auth)
    never_started = (await get(http, alice, f"/v2/task/{cancelled}/")).json()
    assert never_started["ended_at"] is not None and never_started["duration_s"] is None


async def test_logs_oldest_first_in_pages_and_filtered(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize", max_retries=1)
    task_id = await enqueue(http, alice)
    path = f"/v2/task/{task_id}/logs"
    assert (await get(http, alice, path)).json()["data"] == []
    first = await start(store, stub)
    await append(store, first, ("stdout", "one"), ("stderr", "two: warning"))
    await append(store, first, ("stdout", "  three\twith tab  "), ("stdout", "ünïcode ✓"))
    await finish(store, first, TaskStatus.FAILED, error='{"type": "E", "message": "m"}',
                 retryable=True)
    second = await start(store, stub)
    await append(store, second, ("stdout", "four"), attempt=2)

    page = (await get(http, alice, path)).json()
    assert [(x["attempt"], x["stream"], x["line"]) for x in page["data"]] == [
        (1, "stdout", "one"), (1, "stderr", "two: warning"), (1, "stdout", "  three\twith tab  "),
        (1, "stdout", "ünïcode ✓"), (2, "stdout", "four"),
    ]
    assert all(set(x) == {"attempt", "stream", "timestamp", "line"} for x in page["data"])
    assert all(ISO.match(x["timestamp"]) for x in page["data"])
    assert page["next_cursor"] is not None  # running: more may come

    seen: list[str] = []
    cursor = ""
    for _ in range(10):
        answer = (await get(http, alice, f"{path}?limit=2&cursor={cursor}")).json()
        assert len(answer["data"]) <= 2
        seen += [x["line"] for x in answer["data"]]
        if not answer["data"]:
            break
        cursor = answer["next_cursor"]
    assert seen == [x["line"] for x in page["data"]]

    async def lines(query: str) -> list[str]:
        response = await get(http, alice, f"{path}?{query}")
        assert response.status_code == 200, response.text
        return [x["line"] for x in response.json()["data"]]

    assert await lines("stream=stderr") == ["two: warning"]
    assert await lines("attempt=2") == ["four"]
    assert await lines("attempt=1&stream=stdout&limit=1") == ["one"]
    assert await lines("attempt=3") == []

    # Lines written later are after the cursor of the earlier page; once the task has ended
    # and nothing is left, next_cursor is null.
    await append(store, second, ("stderr", "five"), attempt=2)
    await finish(store, second)
    rest = (await get(http, alice, f"{path}?cursor={page['next_cursor']}")).json()
    assert [x["line"] for x in rest["data"]] == ["five"]
    assert rest["next_cursor"] is None
    assert (await get(http, alice, path)).json()["next_cursor"] is None


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("attempt=0", "attempt"), ("attempt=-1", "attempt"), ("attempt=one", "attempt"),
        ("attempt=1.5", "attempt"), ("attempt=99999999999999999999", "attempt"),
        ("stream=err", "stream"), ("stream=STDOUT", "stream"),
        ("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"),
        ("cursor=%%%bad", "cursor"), ("cursor=-5", "cursor"), ("cursor=abc", "cursor"),
        ("cursor=99999999999999999999999999", "cursor"),
    ],
)
async def test_bad_log_queries_are_400(
    http: httpx.AsyncClient, store: Store, alice: Tenant, query: str, said: str
) -> None:
    await deploy(store, alice, "resize")
    task_id = await enqueue(http, alice)
    response = await get(http, alice, f"/v2/task/{task_id}/logs?{query}")
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"} and said in response.json()["error"]


@pytest.mark.parametrize("suffix", ["input", "attempts", "logs", "logs/stream"])
@pytest.mark.parametrize("task_id", [str(uuid.UUID(int=0)), "garbage", "%00"])
async def test_unknown_or_malformed_id_is_404(
    http: httpx.AsyncClient, alice: Tenant, suffix: str, task_id: str
) -> None:
    response = await get(http, alice, f"/v2/task/{task_id}/{suffix}")
    assert response.status_code == 404, response.text
    assert set(response.json()) == {"error"}


@pytest.mark.parametrize("suffix", ["input", "attempts", "logs", "logs/stream"])
async def test_another_workspaces_task_is_404(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant, suffix: str
) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = await enqueue(http, alice, secret="alice-data")
    record = await start(store, stub)
    await append(store, record, ("stdout", "alice-line"))
    await finish(store, record)
    assert (await get(http, alice, f"/v2/task/{task_id}/{suffix}")).status_code == 200
    response = await get(http, bob, f"/v2/task/{task_id}/{suffix}")
    assert response.status_code == 404
    assert "alice" not in response.text
