"""Recent look-ups of each queue's latest version, for enqueues.

An enqueue on ``/taskqueue/{name}`` needs the stub its route goes to (the latest active
version); reading it costs a round trip on PostgreSQL for every request, and it changes only on
a deploy, a stop or a start. So a look-up made for an
enqueue is kept for ``TTL_S``, and the enqueue of a kept stub is guarded (``EnqueueCall.latest``
in ``group_commit``): its write refuses it with ``StaleRoute`` if that stub changed or a later
version exists, and the caller looks it up again. Reads that are not guarded never use it.
"""

from __future__ import annotations

import time

from conveyor.server.store.records import Stub

TTL_S = 2.0
#: Entries kept at most; past it, expired ones go first, then all.
MAX_ENTRIES = 10_000


class RouteCache:
    def __init__(self) -> None:
        self._kept: dict[tuple[str, str], tuple[float, Stub]] = {}

    def get(self, workspace_id: str, name: str) -> Stub | None:
        entry = self._kept.get((workspace_id, name))
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def keep(self, stub: Stub) -> None:
        now = time.monotonic()
        if len(self._kept) >= MAX_ENTRIES:
            self._kept = {key: entry for key, entry in self._kept.items() if entry[0] > now}
            if len(self._kept) >= MAX_ENTRIES:
                self._kept.clear()
        self._kept[(stub.workspace_id, stub.name)] = (now + TTL_S, stub)

    def holds(self, stub: Stub) -> bool:
        """``stub`` is the kept look-up itself (so its enqueue must be guarded)."""
        entry = self._kept.get((stub.workspace_id, stub.name))
        return entry is not None and entry[1] is stub

    def forget(self, stub: Stub) -> None:
        if self.holds(stub):
            del self._kept[(stub.workspace_id, stub.name)]

    def forget_queue(self, workspace_id: str, name: str) -> None:
        """A version of the queue was stopped, started or deleted here: look its route up again
        (other processes learn it from their guarded writes)."""
        self._kept.pop((workspace_id, name), None)
