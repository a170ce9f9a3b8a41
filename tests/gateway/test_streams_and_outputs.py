"""SSE subscriptions and signed output links."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import orjson

from conveyor.server.gateway.signing import LinkKeys
from conveyor.server.store.base import Store
from tests.gateway.conftest import BASE, Tenant, deploy, finish, start


def status_events(body: str) -> list[dict[str, object]]:
    events = []
    for block in body.split("\n\n"):
        lines = block.splitlines()
        if "event: status" in lines:
            data = next(line for line in lines if line.startswith("data: "))
            events.append(orjson.loads(data.removeprefix("data: ")))
    return events


async def test_subscribe_pushes_each_change_and_ends_at_terminal(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = (await http.post("/taskqueue/resize", headers=alice.auth)).json()["task_id"]
    stream = asyncio.create_task(http.get(f"/v2/task/{task_id}/subscribe", headers=alice.auth))
    await asyncio.sleep(0.3)
    record = await start(store, stub)
    await asyncio.sleep(0.3)
    await finish(store, record, result="42")
    # The ping interval is 15 s: finishing well before it shows the stream is event driven.
    response = await asyncio.wait_for(stream, 5)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = status_events(response.text)
    assert [e["status"] for e in events] == ["PENDING", "RUNNING", "COMPLETE"]
    assert events[-1]["result"] == 42 and events[-1]["id"] == task_id


async def test_subscribe_to_a_finished_task_sends_it_once(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = (await http.post("/taskqueue/resize", headers=alice.auth)).json()["task_id"]
    await finish(store, await start(store, stub))
    response = await asyncio.wait_for(
        http.get(f"/v2/task/{task_id}/subscribe", headers=alice.auth), 5
    )
    assert [e["status"] for e in status_events(response.text)] == ["COMPLETE"]


async def _output_url(http: httpx.AsyncClient, store: Store, tenant: Tenant) -> str:
    stub = await deploy(store, tenant, "resize")
    task_id = (await http.post("/taskqueue/resize", headers=tenant.auth)).json()["task_id"]
    await finish(store, await start(store, stub), outputs=[("out file.txt", b"payload")])
    task = (await http.get(f"/v2/task/{task_id}", headers=tenant.auth)).json()
    url: str = task["outputs"][0]["url"]
    return url


async def test_signed_output_url_needs_no_token(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    url = await _output_url(http, store, alice)
    response = await http.get(url)
    assert response.status_code == 200
    assert response.content == b"payload"
    assert response.headers["content-type"].startswith("text/plain")


async def test_tampered_or_expired_output_url_is_403(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    url = await _output_url(http, store, alice)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    expires, signature = query["expires"][0], query["signature"][0]
    path = parts.path
    tampered = [
        f"{path}?expires={expires}&signature={'0' * len(signature)}",
        f"{path}?expires={int(expires) + 1}&signature={signature}",
        f"{path.rsplit('/', 1)[0]}/other.txt?expires={expires}&signature={signature}",
        path,
    ]
    for bad in tampered:
        response = await http.get(bad)
        assert response.status_code == 403, bad
        assert set(response.json()) == {"error"}
    output_id = path.split("/")[3]
    past = int(time.time()) - 5
    expired = LinkKeys(await store.server_keys()).url(BASE, output_id, "out file.txt", past)
    assert (await http.get(expired)).status_code == 403


async def test_output_by_token_only_for_its_workspace(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    path = urlsplit(await _output_url(http, store, alice)).path
    assert (await http.get(path, headers=alice.auth)).content == b"payload"
    assert (await http.get(path, headers=bob.auth)).status_code == 404
