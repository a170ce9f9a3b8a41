"""Time over HTTP (DESIGN A10): delay headers on every enqueue route, ``run_at`` in the task
JSON, the SDK's options, schedules deployed and listed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from conveyor import clock
from conveyor.sdk.async_client import AsyncClient
from conveyor.sdk.calls import put_call, start_headers
from conveyor.server.gateway.start_time import MAX_DELAY_S
from conveyor.server.store.base import Store
from conveyor.server.store.records import SCHEDULE_DEPLOYMENT
from tests.gateway.conftest import Tenant, code_bundle, deploy

DELAY, RUN_AT = "Conveyor-Delay", "Conveyor-Run-At"


async def run_at_of(store: Store, task_id: str) -> int | None:
    view = await store.get_task(task_id)
    assert view is not None
    return view.task.run_at


def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    body = response.json()
    return body["task_ids"] if "task_ids" in body else [body["task_id"]]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/taskqueue/resize", {"x": 1}),
        ("/taskqueue/resize/v1", {"x": 1}),
        ("/taskqueue/resize/batch", {"tasks": [{"x": 1}, {"x": 2}]}),
        ("/taskqueue/resize/latest/batch", {"tasks": [{"x": 1}]}),
    ],
)
async def test_a_delay_on_any_enqueue_route_puts_off_every_task(
    http: httpx.AsyncClient, store: Store, alice: Tenant, path: str, body: dict[str, Any]
) -> None:
    stub = await deploy(store, alice, "resize")
    before = clock.to_us(clock.now())
    response = await http.post(path, json=body, headers={**alice.auth, DELAY: "90"})
    after = clock.to_us(clock.now())
    for task_id in ids_of(response):
        run_at = await run_at_of(store, task_id)
        assert run_at is not None and before + 90_000_000 <= run_at <= after + 90_000_000
    # Not claimable before its time, by the claimer's clock.
    assert await store.claim(stub.id, "c", 10, 60, now=clock.now() + 80) == []
    assert len(await store.claim(stub.id, "c", 10, 60, now=clock.now() + 91)) == len(
        ids_of(response)
    )


async def test_run_at_is_in_the_task_json(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=250000)
    timed = ids_of(await http.post("/taskqueue/resize", json={},
                                   headers={**alice.auth, RUN_AT: at.isoformat()}))[0]
    plain = ids_of(await http.post("/taskqueue/resize", json={}, headers=alice.auth))[0]
    shown = (await http.get(f"/v2/task/{timed}/", headers=alice.auth)).json()
    assert shown["run_at"] == at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert shown["status"] == "PENDING" and shown["stats"]["queue_depth"] == 2
    assert (await http.get(f"/v2/task/{plain}/", headers=alice.auth)).json()["run_at"] is None
    # A time already past means at once: kept as the enqueue's own time.
    past = ids_of(await http.post("/taskqueue/resize", json={},
                                  headers={**alice.auth, RUN_AT: "2020-01-01T00:00:00Z"}))[0]
    task = (await http.get(f"/v2/task/{past}/", headers=alice.auth)).json()
    assert task["run_at"] is not None and task["run_at"][:16] == task["created_at"][:16]


async def test_the_public_route_takes_a_delay_too(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "open", authorized=False)
    response = await http.post(f"/taskqueue/public/{stub.id}", json={}, headers={DELAY: "5"})
    assert await run_at_of(store, ids_of(response)[0]) is not None


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({DELAY: "-1"}, DELAY),
        ({DELAY: "abc"}, DELAY),
        ({DELAY: "nan"}, DELAY),
        ({DELAY: "1e3"}, DELAY),
        ({DELAY: ""}, DELAY),
        ({DELAY: str(MAX_DELAY_S + 1)}, "a year"),
        ({DELAY: "9" * 400}, DELAY),
        ({RUN_AT: "tomorrow"}, RUN_AT),
        ({RUN_AT: "2026-13-45T99:00:00Z"}, RUN_AT),
        ({RUN_AT: "2999-01-01T00:00:00Z"}, "a year"),
        ({RUN_AT: "x" * 5000}, RUN_AT),
        ({DELAY: "5", RUN_AT: "2026-11-28T19:30:00Z"}, "one of"),
    ],
)
@pytest.mark.parametrize("path", ["/taskqueue/resize", "/taskqueue/resize/batch"])
async def test_a_bad_delay_header_is_400_and_enqueues_nothing(
    http: httpx.AsyncClient, store: Store, alice: Tenant, path: str, headers: dict[str, str],
    message: str,
) -> None:
    await deploy(store, alice, "resize")
    body = {"tasks": [{}]} if path.endswith("batch") else {}
    response = await http.post(path, json=body, headers={**alice.auth, **headers})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert len(response.json()["error"]) < 300  # never echoes a long header back
    listed = await http.get("/v2/task/", headers=alice.auth)
    assert listed.json()["data"] == []


async def test_the_same_header_twice_is_400(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    headers = [*alice.auth.items(), (DELAY, "1"), (DELAY, "2")]
    response = await http.post("/taskqueue/resize", json={}, headers=headers)
    assert response.status_code == 400 and "once" in response.json()["error"]


async def test_openapi_documents_the_headers_on_enqueue_routes(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    for path in ("/taskqueue/{name}", "/taskqueue/{name}/batch", "/taskqueue/id/{stub_id}"):
        names = {p["name"] for p in spec["paths"][path]["post"]["parameters"]}
        assert {DELAY, RUN_AT} <= names, path
    assert "run_at" in spec["components"]["schemas"]["TaskOut"]["properties"]
    assert "/v2/schedule/" in spec["paths"]


# -- the SDK's options ---------------------------------------------------------------------------


def test_put_options_become_headers_not_arguments() -> None:
    call = put_call("resize", ["a.png"], {"width": 1, "delay": 30, "idempotency_key": "k"})
    assert call.body == {"args": ["a.png"], "kwargs": {"width": 1}}
    assert call.headers == {"Idempotency-Key": "k", DELAY: "30.000000"}
    at = datetime(2026, 11, 28, 19, 30, tzinfo=UTC)
    assert start_headers(None, at) == {RUN_AT: "2026-11-28T19:30:00+00:00"}
    assert start_headers(None, "2026-11-28T19:30:00Z") == {RUN_AT: "2026-11-28T19:30:00Z"}
    for delay, run_at, message in (
        (1, at, "not both"), (True, None, "a number"), ("30", None, "a number"),
        (None, datetime(2026, 1, 1), "time zone"), (None, 5, "ISO 8601"),
    ):
        with pytest.raises(ValueError, match=message):
            start_headers(delay, run_at)


async def test_async_client_put_and_batch_with_a_delay(
    transport: httpx.ASGITransport, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    at = datetime.now(UTC) + timedelta(minutes=5)
    async with AsyncClient("http://gateway.test", alice.token, transport=transport) as client:
        delayed = await client.put("resize", 1, delay=2.5)
        timed = await client.put("resize", 2, run_at=at)
        batch = await client.put_batch("resize", [{"x": 3}, {"x": 4}], delay=60)
        shown = await client.task(delayed.id)
    created = datetime.fromisoformat(shown["created_at"])
    assert 2.4 < (datetime.fromisoformat(shown["run_at"]) - created).total_seconds() < 2.6
    assert await run_at_of(store, timed.id) == clock.to_us(at.timestamp())
    for task in batch:
        assert await run_at_of(store, task.id) is not None
    view = await store.get_task(delayed.id)
    assert view is not None and orjson.loads(view.task.payload) == {"args": [1], "kwargs": {}}


def test_queue_options_put_sends_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    from conveyor import task_queue
    from conveyor.sdk.client import Client

    sent: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(200, json={"task_id": "t-1"})

    client = Client("http://gateway.test", "tok", transport=httpx.MockTransport(answer))
    monkeypatch.setattr(Client, "from_env", classmethod(lambda cls: client))

    @task_queue(name="remind")
    def remind(user: int) -> None: ...

    assert remind.options(delay=30).put(7).id == "t-1"
    assert remind.options(run_at="2026-11-28T19:30:00Z").put(user=8).id == "t-1"
    assert sent[0].headers[DELAY] == "30.000000" and RUN_AT not in sent[0].headers
    assert json.loads(sent[0].content) == {"args": [7], "kwargs": {}}
    assert sent[1].headers[RUN_AT] == "2026-11-28T19:30:00Z"
    assert json.loads(sent[1].content) == {"args": [], "kwargs": {"user": 8}}


# -- schedules -----------------------------------------------------------------------------------


async def post_deploy(http: httpx.AsyncClient, tenant: Tenant, config: Any) -> httpx.Response:
    files = {"config": (None, json.dumps(config)),
             "code": ("b.zip", code_bundle(), "application/zip")}
    return await http.post("/v2/deployment/", files=files, headers=tenant.auth)


async def test_a_schedule_deploys_and_is_listed_with_its_next_ticks(
    http: httpx.AsyncClient, store: Store, alice: Tenant, bob: Tenant
) -> None:
    config = {"name": "nightly", "handler": "app.py:handler", "when": "30 2 * * *",
              "timezone": "Europe/Paris"}
    deployed = await post_deploy(http, alice, config)
    assert deployed.status_code == 200, deployed.text
    stub = await store.get_stub(deployed.json()["stub_id"])
    assert stub is not None and stub.type == SCHEDULE_DEPLOYMENT
    [listed] = (await http.get("/v2/schedule/", headers=alice.auth)).json()["data"]
    assert listed["name"] == "nightly" and listed["version"] == 1
    assert listed["when"] == "30 2 * * *" and listed["timezone"] == "Europe/Paris"
    assert listed["last_tick"] is None and len(listed["next"]) == 3
    for shown in listed["next"]:  # 02:30 in Paris: 01:30 UTC in winter, 00:30 in summer
        assert shown.endswith(("T01:30:00.000000Z", "T00:30:00.000000Z")), shown
    # The last tick, once one is made.
    made = await store.make_tick(stub, clock.to_us(clock.now()) - 1, True)
    assert made is not None
    [listed] = (await http.get("/v2/schedule/", headers=alice.auth)).json()["data"]
    assert listed["last_tick"]["task_id"] == made.task_id and listed["last_tick"]["catch_up"]
    task = (await http.get(f"/v2/task/{made.task_id}/", headers=alice.auth)).json()
    assert task["stub"]["type"] == SCHEDULE_DEPLOYMENT and task["run_at"] is not None
    # Another workspace sees none of it.
    assert (await http.get("/v2/schedule/", headers=bob.auth)).json()["data"] == []
    assert (await http.get("/v2/schedule/")).status_code == 401


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"when": "61 * * * *"}, "when"),
        ({"when": "* * * * * *"}, "when"),
        ({"when": "@reboot"}, "when"),
        ({"when": ["*"]}, "when"),
        ({"when": "@hourly", "timezone": "Not/AZone"}, "timezone"),
        ({"when": "@hourly", "timezone": "../../etc/passwd"}, "timezone"),
        ({"timezone": "UTC"}, "timezone"),
    ],
)
async def test_a_bad_schedule_is_400_naming_its_field(
    http: httpx.AsyncClient, alice: Tenant, extra: dict[str, Any], field: str
) -> None:
    response = await post_deploy(http, alice, {"name": "n", "handler": "app.py:h", **extra})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(field)


async def test_a_name_is_a_queue_or_a_schedule(
    http: httpx.AsyncClient, store: Store, alice: Tenant
) -> None:
    await deploy(store, alice, "resize")
    response = await post_deploy(
        http, alice, {"name": "resize", "handler": "app.py:handler", "when": "@daily"}
    )
    assert response.status_code == 400 and "task queue already" in response.json()["error"]
