"""What ``conveyor serve`` tells its console about its queues as they change: which version
each unversioned route (``/taskqueue/<name>``) enqueues onto, and when nothing runs it.

``serve``'s agent runs its own serve stubs and every deployed version, so a ``deploy`` beside
it is announced and runs at once; a route left on a serve stub of an earlier ``serve`` run
(not served now) is a route whose tasks would wait, and the console says so (DESIGN A11).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Collection

from conveyor.errors import StoreError
from conveyor.server.store.base import Store
from conveyor.server.store.records import DEPLOYED, Stub

#: Seconds between looks at the workspace's stubs.
EVERY_S = 2.0


def route_line(stub: Stub, runs_here: bool, others: int) -> str:
    kind = "deployed" if stub.type in DEPLOYED else "served"
    line = f"  /taskqueue/{stub.name} → v{stub.version} ({kind})"
    if not stub.active:
        return line + f": every version of {stub.name} is stopped, its enqueues are refused"
    if runs_here or others:
        return line
    return line + f": no agent runs {stub.name} v{stub.version}, its tasks wait"


async def watch_routes(
    store: Store,
    workspace_id: str,
    served: Collection[str],
    say: Callable[[str], None],
    stop: asyncio.Event,
    every: float = EVERY_S,
) -> None:
    """Say a route's line at start and whenever its version or its being run changes."""
    shown: dict[str, tuple[int, bool, bool]] = {}
    while not stop.is_set():
        with contextlib.suppress(StoreError):  # a store hiccup only delays the next line
            await _look(store, workspace_id, served, say, shown)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def _look(
    store: Store,
    workspace_id: str,
    served: Collection[str],
    say: Callable[[str], None],
    shown: dict[str, tuple[int, bool, bool]],
) -> None:
    latest: dict[str, Stub] = {}  # where each route goes: the latest active version
    for stub in await store.list_stubs(workspace_id):
        kept = latest.get(stub.name)
        if kept is None or (stub.active, stub.version) > (kept.active, kept.version):
            latest[stub.name] = stub
    agents = await store.live_agents()
    for name, stub in sorted(latest.items()):
        here = stub.id in served or stub.type in DEPLOYED
        others = sum(agent.runs(stub.id, stub.type) for agent in agents)
        state = (stub.version, stub.active, here or others > 0)
        if shown.get(name) != state:
            shown[name] = state
            say(route_line(stub, here, others))
