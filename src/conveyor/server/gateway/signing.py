"""Signed output URLs: anyone holding the link may download the file until it expires.

The keys are the store's (``Store.server_keys``), so every gateway on one store accepts the
others' links. A gateway keeps them for ``KEYS_REFRESH_S``: signing a link costs no store round
trip, and a rotation (``conveyor signing-key rotate``) reaches every gateway within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from conveyor.server.store.base import Store
from conveyor.server.store.records import ServerKeys

#: The keys are re-read from the store when older than this.
KEYS_REFRESH_S = 5.0
#: A live link that no cached key verifies re-reads the keys, at most this often: links of a
#: key another gateway has just rotated to verify at once, and forged links cannot make every
#: request ask the store.
MISS_REFRESH_S = 1.0
#: An ``expires`` longer than this is no unix time of ours (and ``int()`` of a 5,000-digit
#: string raises); a signature is 64 hex digits.
_MAX_EXPIRES_DIGITS = 16
_SIGNATURE_LENGTH = 64


def _signature(key: str, output_id: str, name: str, expires: int) -> str:
    """HMAC-SHA256 over ``<output_id>/<name>:<expires>``."""
    message = f"{output_id}/{name}:{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class LinkKeys:
    """One reading of the keys: the current one signs, the current and previous verify."""

    keys: ServerKeys

    def url(self, base_url: str, output_id: str, name: str, expires: int) -> str:
        signature = _signature(self.keys.current, output_id, name, expires)
        query = urlencode({"expires": expires, "signature": signature})
        path = f"/v2/output/{quote(output_id, safe='')}/{quote(name, safe='')}"
        return f"{base_url}{path}?{query}"

    def verifies(self, output_id: str, name: str, expires: int, signature: str) -> bool:
        keys = (self.keys.current, self.keys.previous)
        return any(
            hmac.compare_digest(_signature(key, output_id, name, expires), signature)
            for key in keys
            if key is not None
        )


def _is_ascii_digits(text: str, max_length: int) -> bool:
    return 0 < len(text) <= max_length and text.isascii() and text.isdigit()


def _is_ascii_hex(text: str) -> bool:
    return text.isascii() and all(c in "0123456789abcdefABCDEF" for c in text)


class OutputSigner:
    """The store's keys, cached; ``keys()`` signs, ``is_valid`` checks a link."""

    def __init__(
        self,
        store: Store,
        *,
        refresh_s: float = KEYS_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._refresh_s = refresh_s
        self._clock = clock
        self._keys: LinkKeys | None = None
        self._read_at = -math.inf
        self._reading = asyncio.Lock()

    async def keys(self) -> LinkKeys:
        """The keys as read at most ``refresh_s`` ago."""
        return await self._read(self._refresh_s)

    async def is_valid(
        self, output_id: str, name: str, expires: str | None, signature: str | None, now: float
    ) -> bool:
        """True when the signature matches and ``expires`` (unix seconds) is not past. Any
        malformed value (non-ASCII digits, far too long, not hex) is simply not valid."""
        if not expires or not signature or not _is_ascii_digits(expires, _MAX_EXPIRES_DIGITS):
            return False
        if len(signature) != _SIGNATURE_LENGTH or not _is_ascii_hex(signature):
            return False
        expires_at = int(expires)
        if expires_at < now:
            return False
        keys = await self.keys()
        if keys.verifies(output_id, name, expires_at, signature):
            return True
        fresh = await self._read(MISS_REFRESH_S)
        return fresh is not keys and fresh.verifies(output_id, name, expires_at, signature)

    async def _read(self, max_age: float) -> LinkKeys:
        keys = self._keys
        if keys is None or self._clock() - self._read_at >= max_age:
            async with self._reading:  # requests arriving together share one store read
                keys = self._keys
                if keys is None or self._clock() - self._read_at >= max_age:
                    keys = self._keys = LinkKeys(await self._store.server_keys())
                    self._read_at = self._clock()
        return keys
