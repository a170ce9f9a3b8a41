"""``/v2/secret/`` (DESIGN A9), on both backends: create, list (names and dates only), update,
delete; scoped to the caller's workspace; every mistake a 400 that does not repeat the value;
no key on the server a 503, never a 500; the store holds only ciphertext."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from conveyor.server.app import server_app
from conveyor.server.gateway import secret_routes
from conveyor.server.gateway.secret_routes import MAX_VALUE_BYTES
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.secret_key import SecretKey, new_key
from conveyor.server.store.base import Store
from tests.gateway.conftest import BASE, Tenant

VALUE = "sk-live-0123456789abcdef"
KEY = SecretKey(keys=new_key())


@pytest.fixture
async def keyed(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    """The app with a secret key, as ``server`` and ``serve`` run it."""
    app = server_app(store, GatewaySettings(max_body_bytes=256 * 1024), secret_key=KEY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        yield client


async def put(client: httpx.AsyncClient, tenant: Tenant, name: str, value: str) -> httpx.Response:
    return await client.post("/v2/secret/", json={"name": name, "value": value},
                             headers=tenant.auth)


async def _ciphertext(store: Store, tenant: Tenant, name: str) -> str:
    return (await store.secret_ciphertexts(tenant.workspace.id, [name]))[name]


async def test_create_list_update_delete(
    store: Store, keyed: httpx.AsyncClient, alice: Tenant
) -> None:
    made = await put(keyed, alice, "S3_KEY", VALUE)
    assert made.status_code == 200, made.text
    assert set(made.json()) == {"name", "created_at", "updated_at"}
    assert made.json()["name"] == "S3_KEY" and VALUE not in made.text
    stored = await _ciphertext(store, alice, "S3_KEY")
    assert VALUE not in stored and KEY.decrypt("S3_KEY", stored) == VALUE

    listed = await keyed.get("/v2/secret/", headers=alice.auth)
    assert listed.status_code == 200 and listed.json() == {"data": [made.json()]}

    updated = await keyed.post("/v2/secret", json={"name": "S3_KEY", "value": "v2"},
                               headers=alice.auth)
    assert updated.status_code == 200
    assert updated.json()["created_at"] == made.json()["created_at"]
    assert updated.json()["updated_at"] > made.json()["updated_at"]
    assert KEY.decrypt("S3_KEY", await _ciphertext(store, alice, "S3_KEY")) == "v2"

    gone = await keyed.delete("/v2/secret/S3_KEY", headers=alice.auth)
    assert gone.status_code == 200 and gone.json() == {}
    again = await keyed.delete("/v2/secret/S3_KEY", headers=alice.auth)
    assert again.status_code == 404 and again.json() == {"error": "unknown secret 'S3_KEY'"}
    assert (await keyed.get("/v2/secret/", headers=alice.auth)).json() == {"data": []}


async def test_another_workspace_sees_none_of_them(
    store: Store, keyed: httpx.AsyncClient, alice: Tenant, bob: Tenant
) -> None:
    await put(keyed, alice, "DB_PASSWORD", VALUE)
    assert (await keyed.get("/v2/secret/", headers=bob.auth)).json() == {"data": []}
    refused = await keyed.delete("/v2/secret/DB_PASSWORD", headers=bob.auth)
    assert refused.status_code == 404
    # Bob's own secret of that name is his; alice's stays as it was.
    await put(keyed, bob, "DB_PASSWORD", "bobs")
    assert KEY.decrypt("X", await _ciphertext(store, alice, "DB_PASSWORD")) == VALUE
    assert KEY.decrypt("X", await _ciphertext(store, bob, "DB_PASSWORD")) == "bobs"
    for route in ("/v2/secret/", "/v2/secret/DB_PASSWORD"):
        assert (await keyed.request("GET" if route.endswith("/") else "DELETE", route)
                ).status_code == 401


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "s3_key", "value": VALUE}, "name must be upper-case"),
        ({"name": "3KEY", "value": VALUE}, "name must be upper-case"),
        ({"name": "K" * 257, "value": VALUE}, "name must be upper-case"),
        ({"name": VALUE, "value": "x"}, "name must be upper-case"),  # swapped by mistake
        ({"value": VALUE}, "name must be upper-case"),
        ({"name": "KEY"}, "value must be a string"),
        ({"name": "KEY", "value": 12345}, "value must be a string"),
        ({"name": "KEY", "value": [VALUE]}, "value must be a string"),
        ({"name": "KEY", "value": VALUE + "\x00"}, "without NUL"),
        ({"name": "KEY", "value": "x" * (MAX_VALUE_BYTES + 1)}, "at most 65536 bytes"),
        ({"name": "KEY", "value": "\N{SNOWMAN}" * (MAX_VALUE_BYTES // 3 + 1)}, "at most"),
        ({"name": "KEY", "value": VALUE, "secret": VALUE}, "unknown keys ['secret']"),
    ],
)
async def test_mistakes_are_400s_that_do_not_repeat_the_value(
    store: Store, keyed: httpx.AsyncClient, alice: Tenant, body: dict[str, object], says: str
) -> None:
    answer = await keyed.post("/v2/secret/", json=body, headers=alice.auth)
    assert answer.status_code == 400 and says in answer.json()["error"], answer.text
    assert VALUE not in answer.text
    assert await store.list_secrets(alice.workspace.id) == []


async def test_a_value_of_exactly_the_bound_is_kept(
    store: Store, keyed: httpx.AsyncClient, alice: Tenant
) -> None:
    value = "x" * MAX_VALUE_BYTES
    made = await put(keyed, alice, "BIG", value)
    assert made.status_code == 200
    assert KEY.decrypt("BIG", await _ciphertext(store, alice, "BIG")) == value


async def test_without_a_key_creating_is_a_503_that_says_what_to_set(
    store: Store, http: httpx.AsyncClient, alice: Tenant
) -> None:
    answer = await put(http, alice, "KEY", VALUE)
    assert answer.status_code == 503, answer.text
    assert "CONVEYOR_SECRET_KEY" in answer.json()["error"] and VALUE not in answer.text
    assert await store.list_secrets(alice.workspace.id) == []
    assert (await http.get("/v2/secret/", headers=alice.auth)).json() == {"data": []}


async def test_the_routes_are_documented(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert set(paths["/v2/secret/"]) == {"get", "post"}
    assert set(paths["/v2/secret/{name}"]) == {"delete"}
    body = paths["/v2/secret/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["name", "value"]
    listed = paths["/v2/secret/"]["get"]["responses"]["200"]["content"]["application/json"]
    assert listed["schema"] == {"$ref": "#/components/schemas/SecretListOut"}


async def test_a_workspace_holds_a_bounded_number_of_secrets(
    store: Store, keyed: httpx.AsyncClient, alice: Tenant, bob: Tenant,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(secret_routes, "MAX_SECRETS", 2)
    for name in ("ONE", "TWO"):
        made = await put(keyed, alice, name, "v")
        assert made.status_code == 200
    third = await put(keyed, alice, "THREE", "v")
    assert third.status_code == 400 and "at most 2 secrets" in third.json()["error"]
    again = await put(keyed, alice, "TWO", "new")
    assert again.status_code == 200  # a new value for one it holds is no new secret
    other = await put(keyed, bob, "THREE", "v")
    assert other.status_code == 200  # per workspace
