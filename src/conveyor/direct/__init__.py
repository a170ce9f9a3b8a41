"""The direct producer: enqueue and read tasks through the store itself, without HTTP.

``Client(store=...)`` (``conveyor.sdk.client``) loads this package on first use; a user who
never passes a store URL never imports it, nor the store. It sits between the SDK and the
server: it may import the store and the gateway's plain modules (``task_body``, ``refusals``,
``views``, ``signing``), never the web framework, the gateway's routes, the agent or the CLI
(``tests/unit/test_layering.py``).

Where the gateway's enqueue does (``gateway/invoke.py``): token → workspace (cached 5 s, as the
gateway does), name → latest stub, the body through ``parse_call``, and the store's own
enqueue transaction (``group_commit.write_calls``: pending limit under the stub's row lock,
idempotency keys, the INSERT, the wake-up event), run by an inline driver in the caller's
thread (``server/store/inline.py``). Errors are the ones the HTTP client raises for the same
refusal: ``HTTPError`` with the status code the gateway would answer (401, 404, 429, …), the
store's own error as its ``__cause__``.
"""

from __future__ import annotations

from conveyor.direct.producer import Producer, producer_for

__all__ = ["Producer", "producer_for"]
