"""``/metrics`` (DESIGN A13): no token → 401; a workspace's token sees only its own queues; an
operator token sees every workspace's, and authenticates nothing else."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conveyor.errors import StoreError
from conveyor.server.store.base import Store
from tests.gateway.conftest import Tenant, deploy


def _workspaces(text: str) -> set[str]:
    return {
        sample.labels["workspace"]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if "workspace" in sample.labels
    }


async def test_metrics_need_a_token_and_show_only_the_callers_workspace(
    store: Store, http: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    await deploy(store, alice, "alice-queue")
    await deploy(store, mallory, "mallory-queue")
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = await http.get("/metrics", headers=headers)
        assert response.status_code == 401
        assert "alice" not in response.text and "mallory" not in response.text
    mine = await http.get("/metrics", headers=alice.auth)
    assert mine.status_code == 200
    assert _workspaces(mine.text) == {"alice"}
    assert "alice-queue" in mine.text and "mallory-queue" not in mine.text
    assert "conveyor_task_duration_seconds" not in mine.text  # gateway-wide: operators only
    theirs = await http.get("/metrics", headers=mallory.auth)
    assert _workspaces(theirs.text) == {"mallory"}


async def test_an_operator_token_sees_every_workspace_and_nothing_else(
    store: Store, http: httpx.AsyncClient, alice: Tenant, mallory: Tenant
) -> None:
    await deploy(store, alice, "alice-queue")
    await deploy(store, mallory, "mallory-queue")
    token = await store.create_operator_token()
    operator = {"Authorization": f"Bearer {token}"}
    response = await http.get("/metrics", headers=operator)
    assert response.status_code == 200
    assert _workspaces(response.text) == {"alice", "mallory"}
    assert "conveyor_task_duration_seconds" in response.text
    # It is no workspace's token.
    assert await store.authenticate(token) is None
    assert (await http.get("/v2/task/", headers=operator)).status_code == 401
    assert (await http.get("/v2/taskqueue/", headers=operator)).status_code == 401
    assert (await http.post("/taskqueue/alice-queue", json={}, headers=operator)).status_code \
        == 401
    # And a token cannot be both.
    try:
        await store.create_token(alice.workspace.id, token)
    except StoreError:
        pass
    else:
        raise AssertionError("an operator token became a workspace token")
    assert await store.authenticate(token) is None
