"""The gateway's cached copy of the store's signing keys: read at most every few seconds, a
rotation picked up after that, and a link of a newer key verified at once."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from conveyor.server.gateway.signing import KEYS_REFRESH_S, MISS_REFRESH_S, LinkKeys, OutputSigner
from conveyor.server.store.base import Store
from tests.conftest import OpenStore

EXPIRES = 4_000_000_000
NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def _valid(signer: OutputSigner, link: str) -> bool:
    query = parse_qs(urlsplit(link).query)
    return await signer.is_valid("out-1", "a.txt", query["expires"][0], query["signature"][0], NOW)


async def _link(signer: OutputSigner) -> str:
    keys: LinkKeys = await signer.keys()
    return keys.url("", "out-1", "a.txt", EXPIRES)


async def test_keys_are_cached_until_the_refresh_interval(store: Store) -> None:
    clock = Clock()
    signer = OutputSigner(store, clock=clock)
    first = await signer.keys()
    await store.rotate_server_key()  # another process rotates
    clock.t = KEYS_REFRESH_S - 0.1
    assert await signer.keys() is first  # no store read for this request
    clock.t = KEYS_REFRESH_S
    assert (await signer.keys()).keys == await store.server_keys()


async def test_a_newer_keys_link_rereads_the_keys_at_most_once_a_second(
    store: Store, open_more: OpenStore
) -> None:
    clock = Clock()
    here, elsewhere = OutputSigner(store, clock=clock), await open_more()
    old = await _link(here)
    for step in (1, 2):
        await store.rotate_server_key()
        new = await _link(OutputSigner(elsewhere))  # a gateway started after the rotation
        clock.t = step * MISS_REFRESH_S - 0.1
        assert not await _valid(here, new)  # read less than a second ago: not again
        clock.t = step * MISS_REFRESH_S
        assert await _valid(here, new)
    assert not await _valid(here, old)  # two rotations ago
    assert not await _valid(here, new.replace("signature=", "signature=0"))
