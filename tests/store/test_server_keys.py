"""The server keys of signed output links: one per store, however many gateways start at once,
and a rotation keeps the key before it."""

from __future__ import annotations

import asyncio

from conveyor.server.store.base import Store
from tests.conftest import OpenStore


async def test_gateways_starting_together_get_one_key(open_more: OpenStore) -> None:
    stores = [await open_more() for _ in range(4)]
    found = await asyncio.gather(*(s.server_keys() for s in stores for _ in range(3)))
    assert len({keys.current for keys in found}) == 1
    assert found[0].previous is None
    assert await stores[0].server_keys() == found[0]  # created once, then only read


async def test_rotation_keeps_the_previous_key_only(store: Store) -> None:
    first = (await store.server_keys()).current
    rotated = await store.rotate_server_key()
    assert rotated.previous == first and rotated.current != first
    assert await store.server_keys() == rotated
    again = await store.rotate_server_key()
    assert (again.previous, await store.server_keys()) == (rotated.current, again)
    assert first not in (again.current, again.previous)


async def test_rotation_on_a_new_store_makes_the_first_key(store: Store) -> None:
    made = await store.rotate_server_key()
    assert made.previous is None
    assert await store.server_keys() == made
