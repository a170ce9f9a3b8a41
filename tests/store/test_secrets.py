"""Workspace secrets in the store (DESIGN A9), on both backends: ciphertext kept by workspace
and name, created or replaced, listed without it, deleted; a rotation all or nothing; the
check of a process's key at its start."""

from __future__ import annotations

import pytest

from conveyor.errors import SecretKeyError, StartupError
from conveyor.server.secret_key import SecretKey, check_secret_key, new_key
from conveyor.server.store.base import Store
from conveyor.server.store.records import Workspace
from tests.store.conftest import T0


async def test_put_list_update_and_delete(store: Store, ws: Workspace) -> None:
    made = await store.put_secret(ws.id, "S3_KEY", "cipher-1", now=T0)
    assert made.name == "S3_KEY" and made.created_at == made.updated_at
    await store.put_secret(ws.id, "A_FIRST", "cipher-a", now=T0 + 1)
    updated = await store.put_secret(ws.id, "S3_KEY", "cipher-2", now=T0 + 5)
    assert updated.created_at == made.created_at and updated.updated_at > made.updated_at
    listed = await store.list_secrets(ws.id)
    assert [s.name for s in listed] == ["A_FIRST", "S3_KEY"]  # by name
    assert listed[1] == updated
    assert await store.secret_ciphertexts(ws.id, ["S3_KEY", "MISSING"]) == {"S3_KEY": "cipher-2"}
    assert await store.secret_ciphertexts(ws.id, []) == {}
    assert await store.delete_secret(ws.id, "S3_KEY")
    assert not await store.delete_secret(ws.id, "S3_KEY")
    assert [s.name for s in await store.list_secrets(ws.id)] == ["A_FIRST"]
    assert await store.secret_ciphertexts(ws.id, ["S3_KEY"]) == {}


async def test_another_workspace_sees_none_and_has_its_own(store: Store, ws: Workspace) -> None:
    other = await store.ensure_workspace("other")
    await store.put_secret(ws.id, "TOKEN", "acme-cipher")
    assert await store.list_secrets(other.id) == []
    assert await store.secret_ciphertexts(other.id, ["TOKEN"]) == {}
    assert not await store.delete_secret(other.id, "TOKEN")
    await store.put_secret(other.id, "TOKEN", "other-cipher")  # its own, same name
    assert await store.secret_ciphertexts(ws.id, ["TOKEN"]) == {"TOKEN": "acme-cipher"}
    assert await store.secret_ciphertexts(other.id, ["TOKEN"]) == {"TOKEN": "other-cipher"}


async def test_any_secret_and_a_rewrap_all_or_nothing(store: Store, ws: Workspace) -> None:
    assert await store.any_secret() is None
    assert await store.rewrap_secrets(lambda name, text: text) == 0
    await store.put_secret(ws.id, "ONE", "c1")
    await store.put_secret(ws.id, "TWO", "c2")
    assert await store.any_secret() in {("ONE", "c1"), ("TWO", "c2")}
    assert await store.rewrap_secrets(lambda name, text: f"{name}:{text}") == 2
    assert await store.secret_ciphertexts(ws.id, ["ONE", "TWO"]) == {"ONE": "ONE:c1",
                                                                      "TWO": "TWO:c2"}

    def refuse_two(name: str, text: str) -> str:
        if name == "TWO":
            raise SecretKeyError("not ours")
        return "changed"

    with pytest.raises(SecretKeyError):
        await store.rewrap_secrets(refuse_two)
    assert await store.secret_ciphertexts(ws.id, ["ONE", "TWO"]) == {"ONE": "ONE:c1",
                                                                      "TWO": "TWO:c2"}


async def test_the_start_check_of_a_process_key(
    store: Store, ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    right, wrong = SecretKey(keys=new_key()), SecretKey(keys=new_key())
    await check_secret_key(store, SecretKey())  # no secret yet: no key needed
    with pytest.raises(SecretKeyError, match="does not hold Fernet keys"):
        await check_secret_key(store, SecretKey(keys="malformed"))
    await store.put_secret(ws.id, "S3_KEY", right.encrypt("value"))
    with pytest.raises(StartupError, match="CONVEYOR_SECRET_KEY is not set"):
        await check_secret_key(store, SecretKey())
    await check_secret_key(store, right)
    assert not caplog.records
    await check_secret_key(store, wrong)  # a warning: secrets created again would work
    [record] = caplog.records
    assert record.levelname == "WARNING" and "cannot decrypt secret 'S3_KEY'" in record.message
