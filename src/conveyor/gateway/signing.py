"""Signed output URLs: anyone holding the link may download the file until it expires."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote, urlencode


class OutputSigner:
    """HMAC-SHA256 over ``<output_id>/<name>:<expires>`` keyed by the server secret."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def signature(self, output_id: str, name: str, expires: int) -> str:
        message = f"{output_id}/{name}:{expires}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def url(self, base_url: str, output_id: str, name: str, expires: int) -> str:
        signature = self.signature(output_id, name, expires)
        query = urlencode({"expires": expires, "signature": signature})
        path = f"/v2/output/{quote(output_id, safe='')}/{quote(name, safe='')}"
        return f"{base_url}{path}?{query}"

    def is_valid(
        self, output_id: str, name: str, expires: str | None, signature: str | None, now: float
    ) -> bool:
        """True when the signature matches and ``expires`` (unix seconds) is not past."""
        if not expires or not signature or not expires.isdigit():
            return False
        expected = self.signature(output_id, name, int(expires))
        return hmac.compare_digest(expected, signature) and int(expires) >= now
