"""`conveyor serve` as a real subprocess: the README's flow over HTTP, SIGTERM, and a restart
that loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sandboxing import sandbox_flags

APP = '''
import time
from conveyor import task_queue

@task_queue(name="square")
def square(x: int) -> int:
    return x * x

@task_queue(name="slow", keep_warm_seconds=60)
def slow(seconds: float) -> str:
    time.sleep(seconds)
    return "done"
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve", "app.py:square", "app.py:slow",
             "--port", str(self.port), *sandbox_flags(folder)],
            cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, self.proc.stdout.read() if self.proc.stdout else ""
            time.sleep(0.1)
        self.token = (folder / ".conveyor" / "token").read_text().strip()
        self.http = httpx.Client(base_url=self.url,
                                 headers={"Authorization": f"Bearer {self.token}"})

    def stop(self) -> tuple[int, str]:
        self.http.close()
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            out, _ = self.proc.communicate()
            raise AssertionError(f"conveyor serve did not stop on SIGTERM:\n{out}") from None
        return self.proc.returncode, out

    def wait(self, task_id: str, status: str, timeout: float = 30) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        task: dict[str, object] = {}
        while time.monotonic() < deadline:
            task = self.http.get(f"/v2/task/{task_id}/").json()
            if task["status"] == status:
                return task
            time.sleep(0.05)
        raise AssertionError(f"task never reached {status}: {task}")


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "app.py").write_text(APP)
    yield tmp_path


def test_serve_flow_sigterm_and_restart(folder: Path) -> None:
    serve = Serve(folder)
    try:
        banner_token = serve.token
        task_id = serve.http.post("/taskqueue/square", json={"x": 7}).json()["task_id"]
        done = serve.wait(task_id, "COMPLETE")
        assert done["result"] == 49 and done["stub"]["type"] == "taskqueue/serve"  # type: ignore[index]
        running = serve.http.post("/taskqueue/slow", json={"seconds": 0.5}).json()["task_id"]
        serve.wait(running, "RUNNING")
        cancel_me = serve.http.post("/taskqueue/slow", json={"seconds": 30}).json()["task_id"]
    finally:
        code, out = serve.stop()
    assert code == 0, out
    assert "Traceback" not in out
    assert banner_token in out and "curl" in out

    again = Serve(folder)
    try:
        assert again.token == banner_token  # the token is kept across restarts
        assert again.wait(task_id, "COMPLETE")["result"] == 49
        # the task that was running at SIGTERM finished within the drain grace period
        assert again.wait(running, "COMPLETE")["attempts"] == 1
        # the one still waiting was kept and runs after the restart; cancel it there
        again.wait(cancel_me, "RUNNING")
        body = again.http.request("DELETE", "/v2/task/cancel/",
                                  json={"task_ids": [cancel_me]}).json()
        assert body["cancelled"] == [cancel_me]
        assert again.wait(cancel_me, "CANCELLED")["ended_at"] is not None
    finally:
        code, out = again.stop()
    assert code == 0, out
