"""The public route and per-call bounds (DESIGN A13): an anonymous caller cannot aim a callback
at an address of its choice nor reach an authenticated caller's idempotency keys; a batch or a
cancel names at most 1,000 tasks."""

from __future__ import annotations

import httpx
import orjson

from conveyor.server.store.base import Store
from tests.gateway.conftest import Tenant, deploy


async def test_public_route_ignores_a_per_task_callback_url(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "open", authorized=False, callback_url="http://queue.cb/")
    response = await http.post(
        f"/taskqueue/public/{stub.id}", json={"x": 1, "callback_url": "http://169.254.169.254/"}
    )
    assert response.status_code == 200
    task = await store.get_task(response.json()["task_id"])
    assert task is not None
    assert task.task.callback_url == "http://queue.cb/"  # the queue's own still applies
    assert orjson.loads(task.task.payload) == {"args": [], "kwargs": {"x": 1}}
    # With a token, the per-task callback_url is kept.
    own = await http.post(
        f"/taskqueue/id/{stub.id}", json={"callback_url": "http://mine/"}, headers=alice.auth
    )
    task = await store.get_task(own.json()["task_id"])
    assert task is not None and task.task.callback_url == "http://mine/"


async def test_a_public_call_cannot_claim_or_read_an_authenticated_key(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "open", authorized=False)
    key = {"Idempotency-Key": "order-42"}
    mine = await http.post("/taskqueue/open", json={"secret": 1}, headers={**alice.auth, **key})
    theirs = await http.post(f"/taskqueue/public/{stub.id}", json={"x": 2}, headers=key)
    assert mine.status_code == theirs.status_code == 200
    assert theirs.json()["task_id"] != mine.json()["task_id"]  # not read
    # Claimed first by the public caller, the key is still free for the token holder.
    first_public = await http.post(
        f"/taskqueue/public/{stub.id}", json={}, headers={"Idempotency-Key": "k2"}
    )
    authed = await http.post("/taskqueue/open", json={}, headers={**alice.auth,
                                                                  "Idempotency-Key": "k2"})
    assert authed.json()["task_id"] != first_public.json()["task_id"]
    # Each scope still deduplicates its own retries.
    again = await http.post("/taskqueue/open", json={}, headers={**alice.auth, **key})
    assert again.json()["task_id"] == mine.json()["task_id"]
    public_again = await http.post(f"/taskqueue/public/{stub.id}", json={}, headers=key)
    assert public_again.json()["task_id"] == theirs.json()["task_id"]


async def test_idempotency_keys_of_two_queues_do_not_collide(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    await deploy(store, alice, "email")
    key = {**alice.auth, "Idempotency-Key": "same"}
    resize = await http.post("/taskqueue/resize", json={}, headers=key)
    email = await http.post("/taskqueue/email", json={}, headers=key)
    assert resize.json()["task_id"] != email.json()["task_id"]
    email_task = await store.get_task(email.json()["task_id"])
    assert email_task is not None and email_task.stub.name == "email"


async def test_a_batch_names_at_most_1000_tasks(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    await deploy(store, alice, "resize", max_pending_tasks=5000)
    over = await http.post(
        "/taskqueue/resize/batch", json={"tasks": [{}] * 1001}, headers=alice.auth
    )
    assert over.status_code == 400 and "1000" in over.json()["error"]
    at = await http.post("/taskqueue/resize/batch", json={"tasks": [{}] * 1000},
                         headers=alice.auth)
    assert at.status_code == 200 and len(at.json()["task_ids"]) == 1000


async def test_a_cancel_names_at_most_1000_tasks(http: httpx.AsyncClient, alice: Tenant) -> None:
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(1001)]
    for key in ("task_ids", "ids"):
        over = await http.post("/v2/task/cancel/", json={key: ids}, headers=alice.auth)
        assert over.status_code == 400 and "1000" in over.json()["error"]
    at = await http.request("DELETE", "/v2/task/cancel/", json={"task_ids": ids[:1000]},
                            headers=alice.auth)
    assert at.status_code == 200 and len(at.json()["not_found"]) == 1000
