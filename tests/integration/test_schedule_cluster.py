"""DESIGN A10 with real processes and the real clock: a ``* * * * *`` schedule deployed on
PostgreSQL and served by two ``conveyor server`` and two ``conveyor worker`` processes makes
exactly one task per minute over three minutes, and restarting a gateway and an agent inside a
minute makes no second one. Three real minutes: marked slow."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conveyor import clock
from conveyor.server.store import open_store
from tests.cli.conftest import _healthy, clean_env, free_port, stop_process
from tests.sandboxing import sandbox_flags

pytestmark = [pytest.mark.slow, pytest.mark.timeout(360)]

APP = '''
    import time

    from conveyor import schedule


    @schedule(when="* * * * *", keep_warm_seconds=120)
    def every_minute() -> float:
        return time.time()
'''
TICKS = 3


class Cluster:
    """Two gateways and two agents on one PostgreSQL database, each its own process."""

    def __init__(self, folder: Path, store: str) -> None:
        self.folder = folder
        self.store = store
        self.ports = [free_port(), free_port()]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> None:
        folder = self.folder / name
        folder.mkdir(exist_ok=True)
        if name.startswith("server"):
            port = self.ports[int(name[-1])]
            argv = ["server", "--store", self.store, "--port", str(port)]
        else:
            argv = ["worker", "--store", self.store, *sandbox_flags(folder)]
        with (folder / "log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "conveyor", *argv], cwd=folder,
                env=clean_env(self.folder), stdout=log, stderr=subprocess.STDOUT,
            )

    def restart(self, name: str) -> None:
        assert stop_process(self.processes[name]) == 0, self.logs()
        self.start(name)

    def url(self, n: int) -> str:
        return f"http://127.0.0.1:{self.ports[n]}"

    def wait_healthy(self) -> None:
        for n in range(2):
            deadline = time.monotonic() + 30
            while not _healthy(self.url(n)):
                assert time.monotonic() < deadline, self.logs()
                time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(f"--- {p.parent.name}\n{p.read_text()}"
                         for p in sorted(self.folder.glob("*/log")))

    def stop(self) -> None:
        for process in self.processes.values():
            stop_process(process)


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    running = Cluster(tmp_path, pg_url)
    for name in ("server0", "server1", "worker0", "worker1"):
        running.start(name)
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop()


def sleep_until(instant: float) -> None:
    time.sleep(max(0.0, instant - time.time()))


def test_a_schedule_on_two_gateways_and_two_agents_ticks_once_a_minute(
    cluster: Cluster, pg_url: str
) -> None:
    token = asyncio.run(_token(pg_url))
    app = cluster.folder / "code"
    app.mkdir()
    (app / "app.py").write_text(textwrap.dedent(APP))
    env = clean_env(cluster.folder, CONVEYOR_URL=cluster.url(0), CONVEYOR_TOKEN=token)
    if time.time() % 60 > 55:  # not astride a minute: the first tick is then the next one
        sleep_until(math.ceil(time.time() / 60) * 60 + 1)
    deployed = subprocess.run([sys.executable, "-m", "conveyor", "deploy", "app.py:every_minute"],
                              cwd=app, env=env, capture_output=True, text=True, timeout=60)
    assert deployed.returncode == 0, deployed.stderr
    assert "every_minute v1" in deployed.stdout and deployed.stdout.count(" UTC") == 3
    first = math.ceil(time.time() / 60) * 60  # the first tick after the deploy
    minutes = [first + 60 * n for n in range(TICKS)]

    # A gateway and an agent restart inside each of the first two minutes, after its tick.
    for n, minute in enumerate(minutes[:2]):
        sleep_until(minute + 15)
        cluster.restart(f"server{n}")
        cluster.restart(f"worker{n}")
    cluster.wait_healthy()
    sleep_until(minutes[-1] + 20)

    with httpx.Client(base_url=cluster.url(1), headers={"Authorization": f"Bearer {token}"},
                      timeout=10) as http:
        tasks = http.get("/v2/task/", params={"queue": "every_minute"}).json()["data"]
        [listed] = http.get("/v2/schedule/").json()["data"]
    made = sorted(task["run_at"] for task in tasks)
    assert made == [clock.iso(clock.to_us(m)) for m in minutes], cluster.logs()
    assert all(task["status"] == "COMPLETE" for task in tasks), tasks
    last = listed["last_tick"]
    assert last["at"] == made[-1] and not last["catch_up"]
    for task in tasks:  # each made within a few seconds of its tick, by whoever was first
        made_at = _instant(task["created_at"]) - _instant(task["run_at"])
        assert 0 <= made_at < 5, task


async def _token(url: str) -> str:
    store = open_store(url)
    await store.open()
    try:
        workspace = await store.ensure_workspace("default")
        return await store.create_token(workspace.id)
    finally:
        await store.close()


def _instant(text: Any) -> float:
    return clock.from_us(clock.parse_iso(str(text)))
