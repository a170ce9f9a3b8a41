"""Bad input never answers 500 (DESIGN A4), output links never come from the ``Host`` header,
and the SQLite file is private (DESIGN A13)."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from conveyor.server.app import server_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.gateway.state import with_bound_url
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from tests.gateway.conftest import BASE, Tenant, deploy, finish, start


@pytest.mark.parametrize(
    "query",
    [
        "expires=%C2%B2&signature=ab",  # '²' is a digit to str.isdigit, not to int()
        "expires=" + "9" * 5000 + "&signature=ab",
        "expires=4102444800&signature=%C3%A9%C3%A9",  # non-ASCII signature
        "expires=4102444800&signature=" + "%C3%A9" * 64,
        "expires=%D9%A1%D9%A2&signature=ab",  # Arabic-Indic digits
        "expires=-1&signature=ab",
        "expires=&signature=",
    ],
)
async def test_malformed_output_links_are_refused_not_500(
    http: httpx.AsyncClient, query: str
) -> None:
    response = await http.get(f"/v2/output/x/y?{query}")
    assert response.status_code in (400, 403, 404), response.text
    assert response.json()["error"]


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        _cursor("seq:" + "9" * 30),
        _cursor(f"seq:{2**63}"),
        _cursor(f"seq:{2**64 + 5}"),
        _cursor("seq:" + "9" * 5000),
        _cursor("seq:\u0661\u0662"),
    ],
)
async def test_list_cursor_out_of_range_is_400(
    http: httpx.AsyncClient, alice: Tenant, cursor: str
) -> None:
    response = await http.get(f"/v2/task/?cursor={cursor}", headers=alice.auth)
    assert response.status_code == 400, response.text
    assert "cursor" in response.json()["error"]


async def test_output_links_do_not_follow_the_host_header(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    stub = await deploy(store, alice, "resize")
    task_id = (await http.post("/taskqueue/resize", json={}, headers=alice.auth)).json()["task_id"]
    await finish(store, await start(store, stub), result="1", outputs=[("a.txt", b"a")])
    task = await http.get(
        f"/v2/task/{task_id}", headers={**alice.auth, "Host": "evil.example"}
    )
    assert task.status_code == 200
    url = task.json()["outputs"][0]["url"]
    assert "evil.example" not in url
    assert urlsplit(url).netloc == urlsplit(BASE).netloc  # the address the request reached


async def test_public_url_names_the_links_and_serve_passes_its_bound_address(
    store: Store, alice: Tenant
) -> None:
    settings = with_bound_url(GatewaySettings(), "127.0.0.1", 8123)
    assert settings.public_url == "http://127.0.0.1:8123"
    assert with_bound_url(GatewaySettings(public_url="https://q.example"), "127.0.0.1", 1) \
        .public_url == "https://q.example"
    app = server_app(store, settings)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as http:
        stub = await deploy(store, alice, "resize")
        created = await http.post("/taskqueue/resize", json={}, headers=alice.auth)
        await finish(store, await start(store, stub), result="1", outputs=[("a.txt", b"a")])
        task = await http.get(f"/v2/task/{created.json()['task_id']}",
                              headers={**alice.auth, "Host": "evil.example"})
    assert task.json()["outputs"][0]["url"].startswith("http://127.0.0.1:8123/v2/output/")


async def test_sqlite_store_files_are_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = open_store(f"sqlite:///{tmp_path}/c.db")
        await store.open()
        try:
            await store.ensure_workspace("acme")
            for name in ("c.db", "c.db-wal", "c.db-shm"):
                path = tmp_path / name
                assert path.exists(), name
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
        finally:
            await store.close()
    finally:
        os.umask(old)
