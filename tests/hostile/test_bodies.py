"""Hypothesis on the body → arguments mapping and on the cancel body: every input is either
mapped exactly as DESIGN A4 says or refused with a 400 that names the problem; never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.server.gateway.errors import BadRequest
from conveyor.server.gateway.invoke import parse_call
from conveyor.server.store.base import Store
from tests.gateway.conftest import Tenant, deploy

pytestmark = pytest.mark.slow

SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20)
JSON = st.recursive(
    SCALARS | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
KEYS = st.sampled_from(["args", "kwargs", "callback_url", "x", "y", "context"]) | st.text(
    max_size=8
)
BODIES = st.dictionaries(KEYS, JSON | st.lists(JSON, max_size=3), max_size=6)
URLS = st.sampled_from(["http://example.test/hook", "https://h.test/x", "ftp://nope", "", "x"])
HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@given(body=BODIES, callback=st.one_of(st.none(), URLS))
@settings(max_examples=300, deadline=None)
def test_body_maps_to_arguments_or_is_refused(body: dict[str, Any], callback: str | None) -> None:
    if callback is not None:
        body = {**body, "callback_url": callback}
    try:
        task = parse_call(body, None)
    except BadRequest as exc:
        assert exc.message
        return
    payload = orjson.loads(task.payload)
    fields = {k: v for k, v in body.items() if k != "callback_url"}
    if "args" in fields or "kwargs" in fields:
        assert payload["args"] == fields.get("args", [])
        rest = {k: v for k, v in fields.items() if k not in ("args", "kwargs")}
        assert payload["kwargs"] == {**rest, **fields.get("kwargs", {})}
        assert not set(rest) & set(fields.get("kwargs", {}))
    else:
        assert payload == {"args": [], "kwargs": fields}
    assert task.callback_url == body.get("callback_url")
    if task.callback_url is not None:
        assert task.callback_url.startswith(("http://", "https://"))


async def test_enqueue_route_never_answers_500(
    store: Store, alice: Tenant, http: httpx.AsyncClient
) -> None:
    await deploy(store, alice, "echo", max_pending_tasks=100000)

    @given(body=JSON | BODIES)
    @HYPOTHESIS
    def fuzz(body: Any) -> None:
        raw = orjson.dumps(body)
        seen.append(raw)

    seen: list[bytes] = []
    fuzz()
    for raw in seen:
        response = await http.post("/taskqueue/echo", content=raw, headers=alice.auth)
        assert response.status_code in (200, 400), (raw, response.text)
        if response.status_code == 400:
            assert response.json()["error"]
        else:  # only an object (or JSON null, read as no body) is a call
            assert isinstance(orjson.loads(raw), dict | None)


@pytest.mark.parametrize("method", ["DELETE", "POST"])
async def test_cancel_body_is_validated_and_scoped(
    store: Store, alice: Tenant, mallory: Tenant, http: httpx.AsyncClient, method: str
) -> None:
    await deploy(store, alice, "echo", max_pending_tasks=100000)
    mine = (await http.post("/taskqueue/echo", json={}, headers=alice.auth)).json()["task_id"]
    ids = st.lists(st.sampled_from([mine, "nope", "", "0" * 36]) | st.text(max_size=40),
                   max_size=5)
    bodies = (
        st.fixed_dictionaries({"task_ids": ids})
        | st.fixed_dictionaries({"ids": ids})
        | BODIES
        | JSON
    )

    @given(body=bodies)
    @HYPOTHESIS
    def fuzz(body: Any) -> None:
        seen.append(body)

    seen: list[Any] = []
    fuzz()
    for body in seen:
        response = await http.request(
            method, "/v2/task/cancel/", content=orjson.dumps(body), headers=mallory.auth
        )
        assert response.status_code in (200, 400), (body, response.text)
        if response.status_code == 200:
            answer = response.json()
            assert set(answer) == {"cancelled", "already_finished", "not_found"}
            # Another workspace's task is never touched, never even acknowledged.
            assert mine not in answer["cancelled"] + answer["already_finished"]
    view = await store.get_task(mine)
    assert view is not None and view.task.status.value == "PENDING"
