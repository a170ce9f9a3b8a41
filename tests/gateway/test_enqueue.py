"""Invocation routes: addressing, auth forms, body rules, idempotency, batch, limits."""

from __future__ import annotations

import asyncio
import base64

import httpx
import orjson
import pytest

from conveyor.server.store.base import Store
from tests.gateway.conftest import Tenant, deploy


async def payload_of(store: Store, task_id: str) -> tuple[dict[str, object], str | None]:
    view = await store.get_task(task_id)
    assert view is not None
    return orjson.loads(view.task.payload), view.task.callback_url


async def test_every_address_form_enqueues_on_the_right_version(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    v1 = await deploy(store, alice, "resize")
    v2 = await deploy(store, alice, "resize")
    expected = {
        "/taskqueue/resize": v2.id,
        "/taskqueue/resize/latest": v2.id,
        "/taskqueue/resize/v1": v1.id,
        "/taskqueue/resize/v2": v2.id,
        f"/taskqueue/id/{v1.id}": v1.id,
    }
    for path, stub_id in expected.items():
        response = await http.post(path, json={"x": 1}, headers=alice.auth)
        assert response.status_code == 200, (path, response.text)
        view = await store.get_task(response.json()["task_id"], alice.workspace.id)
        assert view is not None and view.stub.id == stub_id, path


async def test_a_deploy_moves_the_next_enqueue_at_once(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    """The gateway keeps its look-up of a queue's latest version, but an enqueue right after
    a deploy (single or batch, from another gateway for all this one knows) lands on the new
    version: the write re-checks the look-up."""
    await deploy(store, alice, "resize")
    for path, field in (("/taskqueue/resize", "task_id"), ("/taskqueue/resize/batch", None)):
        body = {"x": 1} if field else {"tasks": [{"x": 1}, {"x": 2}]}
        assert (await http.post(path, json=body, headers=alice.auth)).status_code == 200
        latest = await deploy(store, alice, "resize")
        response = await http.post(path, json=body, headers=alice.auth)
        assert response.status_code == 200, response.text
        ids = [response.json()[field]] if field else response.json()["task_ids"]
        for task_id in ids:
            view = await store.get_task(task_id, alice.workspace.id)
            assert view is not None and view.stub.id == latest.id, path


@pytest.mark.parametrize(
    "path", ["/taskqueue/nope", "/taskqueue/resize/v9", "/taskqueue/resize/v1x",
             "/taskqueue/id/not-a-stub", "/taskqueue/nope/batch", "/taskqueue/nope/warmup"]
)
async def test_unknown_queue_or_version_is_404(
    http: httpx.AsyncClient, store: Store, alice: Tenant, path: str
) -> None:
    await deploy(store, alice, "resize")
    response = await http.post(path, json={"tasks": []}, headers=alice.auth)
    assert response.status_code == 404
    assert set(response.json()) == {"error"}


async def test_queues_of_another_workspace_are_invisible(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    assert (await http.post("/taskqueue/resize", headers=bob.auth)).status_code == 404
    assert (await http.post(f"/taskqueue/id/{stub.id}", headers=bob.auth)).status_code == 404


async def test_token_forms(http: httpx.AsyncClient, store: Store, alice: Tenant) -> None:
    await deploy(store, alice, "resize")
    token = alice.token
    accepted = [
        f"Bearer {token}",
        f"Basic {token}",
        "Basic " + base64.b64encode(f"user:{token}".encode()).decode(),
        "Basic " + base64.b64encode(token.encode()).decode(),
        token,
    ]
    for header in accepted:
        response = await http.post("/taskqueue/resize", headers={"Authorization": header})
        assert response.status_code == 200, header
    for header in [None, "Bearer wrong", "Basic d3Jvbmc=", "wrong", f"Token {token}"]:
        headers = {"Authorization": header} if header else {}
        response = await http.post("/taskqueue/resize", headers=headers)
        assert response.status_code == 401, header
        assert "error" in response.json()


async def test_non_invocation_routes_need_bearer(http: httpx.AsyncClient, alice: Tenant) -> None:
    assert (await http.get("/v2/task/", headers=alice.auth)).status_code == 200
    for header in [f"Basic {alice.token}", alice.token]:
        response = await http.get("/v2/task/", headers={"Authorization": header})
        assert response.status_code == 401


async def test_public_route_only_for_unauthorized_queues(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    open_stub = await deploy(store, alice, "open", authorized=False)
    closed_stub = await deploy(store, alice, "closed")
    response = await http.post(f"/taskqueue/public/{open_stub.id}", json={"a": 1})
    assert response.status_code == 200
    assert (await store.get_task(response.json()["task_id"], alice.workspace.id)) is not None
    assert (await http.post(f"/taskqueue/public/{closed_stub.id}")).status_code == 401
    assert (await http.post("/taskqueue/public/unknown")).status_code == 404


@pytest.mark.parametrize(
    ("body", "args", "kwargs"),
    [
        (b"", [], {}),
        (b"{}", [], {}),
        (b'{"path": "a.png", "width": 3}', [], {"path": "a.png", "width": 3}),
        (b'{"args": [1, 2]}', [1, 2], {}),
        (b'{"kwargs": {"w": 1}}', [], {"w": 1}),
        (b'{"args": ["a"], "kwargs": {"w": 1}}', ["a"], {"w": 1}),
        (b'{"args": ["a"], "w": 1}', ["a"], {"w": 1}),
    ],
)
async def test_body_becomes_args_and_kwargs(
    http: httpx.AsyncClient, store: Store, alice: Tenant, body: bytes, args: object, kwargs: object
) -> None:
    await deploy(store, alice, "resize")
    response = await http.post("/taskqueue/resize", content=body, headers=alice.auth)
    assert response.status_code == 200, response.text
    payload, _ = await payload_of(store, response.json()["task_id"])
    assert payload == {"args": args, "kwargs": kwargs}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b'{"args": "a"}', "args must be a list"),
        (b'{"kwargs": [1]}', "kwargs must be an object"),
        (b'{"callback_url": "ftp://x"}', "callback_url"),
        (b'{"callback_url": 5}', "callback_url"),
        (b'{"kwargs": {"w": 1}, "w": 2}', "given twice"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
async def test_bad_bodies_are_400(
    http: httpx.AsyncClient, store: Store, alice: Tenant, body: bytes, message: str
) -> None:
    await deploy(store, alice, "resize")
    response = await http.post("/taskqueue/resize", content=body, headers=alice.auth)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert (await store.queue_summaries(alice.workspace.id))[0].queue_depth == 0


async def test_callback_url_is_kept_on_the_task_not_in_kwargs(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize", callback_url="https://default.example/hook")
    response = await http.post(
        "/taskqueue/resize", json={"x": 1, "callback_url": "http://mine.example/cb"},
        headers=alice.auth,
    )
    payload, callback_url = await payload_of(store, response.json()["task_id"])
    assert payload == {"args": [], "kwargs": {"x": 1}}
    assert callback_url == "http://mine.example/cb"
    response = await http.post("/taskqueue/resize", json={"x": 2}, headers=alice.auth)
    _, callback_url = await payload_of(store, response.json()["task_id"])
    assert callback_url == "https://default.example/hook"


async def test_idempotency_key_returns_the_same_task(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    headers = {**alice.auth, "Idempotency-Key": "order-42"}
    first = await http.post("/taskqueue/resize", json={"x": 1}, headers=headers)
    second = await http.post("/taskqueue/resize", json={"x": 1}, headers=headers)
    other = await http.post("/taskqueue/resize", json={"x": 1}, headers=alice.auth)
    assert first.json()["task_id"] == second.json()["task_id"] != other.json()["task_id"]
    assert (await store.queue_summaries(alice.workspace.id))[0].queue_depth == 2


async def test_pending_limit_is_429_with_retry_after(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "small", max_pending_tasks=2)
    for _ in range(2):
        assert (await http.post("/taskqueue/small", headers=alice.auth)).status_code == 200
    response = await http.post("/taskqueue/small", headers=alice.auth)
    assert response.status_code == 429
    assert response.json() == {"error": "exceeded max pending tasks: 2"}
    assert int(response.headers["retry-after"]) >= 1


async def test_concurrent_enqueues_never_pass_the_limit(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "small", max_pending_tasks=5)
    responses = await asyncio.gather(
        *(http.post("/taskqueue/small", headers=alice.auth) for _ in range(12))
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 5 + [429] * 7


async def test_batch_is_all_or_nothing(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize", max_pending_tasks=3)
    response = await http.post(
        "/taskqueue/resize/batch",
        json={"tasks": [{"args": [1]}, {"w": 2}]},
        headers=alice.auth,
    )
    assert response.status_code == 200
    ids = response.json()["task_ids"]
    assert len(ids) == 2
    payloads = [(await payload_of(store, i))[0] for i in ids]
    assert payloads == [{"args": [1], "kwargs": {}}, {"args": [], "kwargs": {"w": 2}}]

    bad = await http.post(
        f"/taskqueue/id/{stub.id}/batch", json={"tasks": [{"a": 1}, {"args": 3}]},
        headers=alice.auth,
    )
    assert bad.status_code == 400
    assert "tasks[1]" in bad.json()["error"]
    over = await http.post(
        "/taskqueue/resize/v1/batch", json={"tasks": [{}, {}]}, headers=alice.auth
    )
    assert over.status_code == 429
    assert (await store.queue_summaries(alice.workspace.id))[0].queue_depth == 2


@pytest.mark.parametrize("body", [b"[]", b'{"tasks": 3}', b'{"tasks": [1]}', b"{}"])
async def test_batch_body_shape_is_checked(
    http: httpx.AsyncClient, store: Store, alice: Tenant, body: bytes
) -> None:
    await deploy(store, alice, "resize")
    response = await http.post("/taskqueue/resize/batch", content=body, headers=alice.auth)
    assert response.status_code == 400


async def test_warmup_requests_a_container(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    subscription = store.subscribe()
    try:
        response = await http.post("/taskqueue/resize/warmup", headers=alice.auth)
        assert response.status_code == 200
        assert response.json() == {}
        event = await subscription.get(timeout=5)
        assert event is not None and event.kind == "warmup" and event.stub_id == stub.id
    finally:
        subscription.close()


async def test_body_over_the_limit_is_413(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    big = b'{"x": "' + b"a" * (70 * 1024) + b'"}'
    response = await http.post("/taskqueue/resize", content=big, headers=alice.auth)
    assert response.status_code == 413
    assert "error" in response.json()

    async def chunks():  # no Content-Length: counted while reading
        for _ in range(70):
            yield b"a" * 1024

    response = await http.post("/taskqueue/resize", content=chunks(), headers=alice.auth)
    assert response.status_code == 413
    assert "error" in response.json()
    assert (await store.queue_summaries(alice.workspace.id))[0].queue_depth == 0
