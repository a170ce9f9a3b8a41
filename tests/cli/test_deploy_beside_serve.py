"""``conveyor deploy`` next to a running ``conveyor serve`` works with nothing else started,
and an enqueue onto a version no live agent runs says so (DESIGN A11)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from conveyor.sdk.calls import ConveyorWarning
from conveyor.sdk.client import Client
from tests.cli.conftest import Server, clean_env, free_port, start_server, stop_process
from tests.sandboxing import sandbox_flags

WARNING = "Conveyor-Warning"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``serve`` of ``fast`` alone (v1), then ``fast`` deployed beside it (v2)."""
    running = start_server(tmp_path_factory.mktemp("beside"), ["handlers.py:fast"])
    yield running
    stop_process(running.process)


def _queue(server: Server, url: str, name: str) -> dict[str, object]:
    with httpx.Client(headers={"Authorization": f"Bearer {server.token}"}, timeout=10) as http:
        answer: dict[str, object] = http.get(f"{url}/v2/taskqueue/{name}").raise_for_status().json()
        return answer


def test_a_deploy_beside_serve_runs_in_serve_and_the_console_says_so(served: Server) -> None:
    deployed = served.cli("deploy", "handlers.py:fast")
    assert deployed.returncode == 0, deployed.stderr
    assert "fast v2" in deployed.stdout

    ran = served.cli("put", "fast", '{"x": 21}', "--wait", "--timeout", "60")
    assert ran.returncode == 0, ran.stderr + served.log()
    assert json.loads(ran.stdout) == {"x": 21, "double": 42}
    [task] = json.loads(served.cli("task", "list", "--format", "json").stdout)
    assert task["deployment"] == {"name": "fast", "version": 2}

    with served.http() as http:
        answer = http.post("/taskqueue/fast", content=b"{}")
    assert answer.status_code == 200 and WARNING not in answer.headers
    queue = _queue(served, served.url, "fast")
    assert queue["route_version"] == 2
    assert [(v["version"], v["agents"]) for v in queue["versions"]] == [(1, 1), (2, 1)]  # type: ignore[attr-defined]
    listed = served.cli("queue", "list")
    assert "v1 v2←" in listed.stdout and "no agent" not in listed.stdout, listed.stdout
    until(lambda: "/taskqueue/fast → v2 (deployed)" in served.log(), within=10)
    assert "/taskqueue/fast → v1 (served)" in served.log()


def test_an_enqueue_onto_a_version_nothing_runs_warns(served: Server, tmp_path: Path) -> None:
    """Once serve has stopped, a gateway alone on its store accepts the task and warns."""
    stop_process(served.process)
    port = free_port()
    gateway = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "server", "--store", served.store_url,
         "--port", str(port)],
        cwd=tmp_path, env=clean_env(served.home), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {served.token}"}
    try:
        until(lambda: _answers(url), within=30)
        with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
            latest = http.post("/taskqueue/fast", content=b'{"x": 1}')
            assert latest.status_code == 200 and latest.json()["task_id"]
            assert latest.headers[WARNING] == "no agent runs fast v2"
            first = http.post("/taskqueue/fast/v1/batch", content=b'{"tasks": [{}]}')
            assert first.status_code == 200
            assert first.headers[WARNING] == "no agent runs fast v1"
        queue = _queue(served, url, "fast")
        assert [v["agents"] for v in queue["versions"]] == [0, 0]  # type: ignore[attr-defined]
        env = {**served.env, "CONVEYOR_URL": url}
        put = served.cli("put", "fast", "{}", env=env)
        assert put.returncode == 0 and put.stdout.strip(), put.stderr
        assert put.stderr.strip() == (
            "warning: no agent runs fast v2; the task waits until one does"
        )
        with Client(url, served.token) as client, pytest.warns(ConveyorWarning, match="fast v2"):
            client.put("fast", x=2)
        listed = served.cli("queue", "list", env=env).stdout
        assert "v1 (no agent) v2← (no agent)" in listed, listed

        worker = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--store", served.store_url,
             *sandbox_flags(tmp_path)],
            cwd=tmp_path, env=clean_env(served.home), stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:  # a worker runs deployed versions: v2 is run again, the served v1 is not
            with httpx.Client(base_url=url, headers=headers, timeout=10) as http:
                until(lambda: WARNING not in http.post("/taskqueue/fast").headers, within=30)
                again = http.post("/taskqueue/fast/v1")
                assert again.headers[WARNING] == "no agent runs fast v1"
        finally:
            assert stop_process(worker) == 0
    finally:
        stop_process(gateway)


def until(condition: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"not within {within} s"
        time.sleep(0.1)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False
