"""Every task route with another workspace's token and with no token: 404 / not_found / 401,
and nothing of the other workspace in any answer."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from conveyor.clock import to_us
from conveyor.server.store.base import Store
from conveyor.server.store.records import LogLimits, LogLine, TaskFilter
from tests.gateway.conftest import Tenant, deploy, finish, start

NO_TOKEN: dict[str, str] = {}


async def _alices_task(store: Store, http: httpx.AsyncClient, alice: Tenant) -> tuple[str, str]:
    """A COMPLETE task of alice with a result, an output and a log line; returns (task id, stub
    id)."""
    stub = await deploy(store, alice, "secret-queue")
    response = await http.post("/taskqueue/secret-queue", json={"x": "alice-data"},
                               headers=alice.auth)
    task_id: str = response.json()["task_id"]
    record = await start(store, stub)
    line = LogLine(record.id, record.attempt, "stdout", to_us(time.time()), "alice-line")
    await store.append_logs([line], LogLimits())
    await finish(store, record, result='"alice-result"', outputs=[("alice.txt", b"alice-bytes")])
    return task_id, stub.id


def _routes(task_id: str, stub_id: str) -> list[tuple[str, str, dict[str, object] | None]]:
    ids: dict[str, object] = {"task_ids": [task_id]}
    return [
        ("GET", f"/v2/task/{task_id}", None),
        ("GET", f"/v2/task/{task_id}/", None),
        ("GET", f"/v2/task/{task_id}/subscribe", None),
        ("GET", f"/v2/task/{task_id}/input", None),
        ("GET", f"/v2/task/{task_id}/attempts", None),
        ("GET", f"/v2/task/{task_id}/logs", None),
        ("GET", f"/v2/task/{task_id}/logs?stream=stdout&attempt=1&limit=5", None),
        ("GET", f"/v2/task/{task_id}/logs/stream", None),
        ("GET", "/v2/task/", None),
        ("GET", f"/v2/task/?stub_id={stub_id}", None),
        ("GET", "/v2/task/?queue=secret-queue&status=COMPLETE", None),
        ("DELETE", "/v2/task/cancel/", ids),
        ("POST", "/v2/task/cancel/", {"ids": [task_id]}),
        ("POST", "/taskqueue/secret-queue", {}),
        ("POST", "/taskqueue/secret-queue/latest", {}),
        ("POST", "/taskqueue/secret-queue/v1", {}),
        ("POST", "/taskqueue/secret-queue/batch", {"tasks": [{}]}),
        ("POST", "/taskqueue/secret-queue/warmup", {}),
        ("POST", f"/taskqueue/id/{stub_id}", {}),
        ("POST", f"/taskqueue/id/{stub_id}/batch", {"tasks": [{}]}),
        ("POST", f"/taskqueue/public/{stub_id}", {}),
        ("GET", "/v2/taskqueue/", None),
        ("GET", "/v2/taskqueue/secret-queue", None),
        ("POST", f"/v2/task/{task_id}/replay", None),
        ("POST", f"/v2/task/{task_id}/replay?version=latest", None),
        ("POST", "/v2/task/replay/", ids),
        ("POST", "/v2/task/replay/", {"queue": "secret-queue", "status": "COMPLETE"}),
        ("POST", "/v2/task/replay/", {"stub_id": stub_id}),
        ("GET", "/v2/deployment/", None),
        ("POST", f"/v2/deployment/{stub_id}/stop", None),
        ("POST", f"/v2/deployment/{stub_id}/start", None),
        ("DELETE", f"/v2/deployment/{stub_id}", None),
    ]


async def _call(
    http: httpx.AsyncClient, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    return await http.request(method, path, json=body, headers=headers, timeout=10)


async def _answers(
    http: httpx.AsyncClient, task_id: str, stub_id: str, headers: dict[str, str]
) -> list[tuple[str, int, str]]:
    """Each route's status and body, with the ids it was asked about replaced by placeholders."""
    answers = []
    for method, path, body in _routes(task_id, stub_id):
        response = await _call(http, method, path, body, headers)
        text = response.text.replace(task_id, "<task>").replace(stub_id, "<stub>")
        answers.append((f"{method} {path}", response.status_code, text))
    return answers


async def test_another_workspaces_ids_look_like_unknown_ids(
    store: Store, http: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    task_id, stub_id = await _alices_task(store, http, alice)
    foreign = await _answers(http, task_id, stub_id, mallory.auth)
    unknown = await _answers(http, str(uuid.uuid4()), str(uuid.uuid4()), mallory.auth)
    for (route, status, text), (_, status_unknown, text_unknown) in zip(
        foreign, unknown, strict=True
    ):
        assert status in (200, 401, 404), (route, status)
        if "/public/" in route:
            continue  # tokenless: says "needs a token" for any authorized queue's id
        # Indistinguishable from an id that does not exist: nothing leaks, not even existence.
        assert (status, text) == (status_unknown, text_unknown), route
        for secret in ("alice", "secret-queue-v", "alice-result", "alice.txt"):
            assert secret not in text, (route, text)
        if "/cancel" in route:
            assert text == '{"cancelled":[],"already_finished":[],"not_found":["<task>"]}'
    view = await store.get_task(task_id)
    assert view is not None and view.task.status.value == "COMPLETE"
    assert view.task.result == '"alice-result"'
    tasks, _ = await store.list_tasks(mallory.workspace.id, TaskFilter())
    assert tasks == []
    # Not stopped, not deleted, not replayed.
    assert view.stub.active and (await store.get_stub(stub_id)) == view.stub
    tasks, _ = await store.list_tasks(alice.workspace.id, TaskFilter())
    assert [t.task.id for t in tasks] == [task_id]


async def test_no_token_is_401_everywhere(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    task_id, stub_id = await _alices_task(store, http, alice)
    for method, path, body in _routes(task_id, stub_id):
        for headers in (NO_TOKEN, {"Authorization": "Bearer wrong"}, {"Authorization": ""}):
            response = await _call(http, method, path, body, headers)
            assert response.status_code == 401, (method, path, headers, response.status_code)
            assert response.json()["error"]
            assert task_id not in response.text and "alice" not in response.text


@pytest.mark.parametrize("who", ["mallory", "nobody"])
async def test_output_links_need_their_signature(
    store: Store, http: httpx.AsyncClient, alice: Tenant, mallory: Tenant, who: str
) -> None:
    task_id, _ = await _alices_task(store, http, alice)
    task = (await http.get(f"/v2/task/{task_id}", headers=alice.auth)).json()
    path = urlsplit(task["outputs"][0]["url"]).path
    headers = mallory.auth if who == "mallory" else NO_TOKEN
    response = await http.get(path, headers=headers)  # unsigned
    assert response.status_code in (401, 403, 404)
    assert b"alice-bytes" not in response.content

