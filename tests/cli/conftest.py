"""Real processes for the CLI tests: ``conveyor serve`` (and ``worker``) started as
subprocesses, and the ``conveyor`` command run the way a user runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from conveyor.tasks import TaskStatus, is_terminal
from tests.sandboxing import sandbox_flags

HANDLERS = '''
    import time

    from conveyor import Output, task_queue


    @task_queue(name="fast", keep_warm_seconds=60)
    def fast(x: int = 0) -> dict:
        return {"x": x, "double": 2 * x}


    @task_queue(name="slow", keep_warm_seconds=60)
    def slow(seconds: float = 60) -> str:
        time.sleep(seconds)
        return "slept"


    @task_queue(name="failing", max_retries=0, keep_warm_seconds=60)
    def failing(message: str = "boom") -> None:
        raise ValueError(message)


    @task_queue(name="saving", keep_warm_seconds=60)
    def saving(name: str = "report.txt") -> str:
        Output.from_bytes(name, b"saved").save()
        return name


    @task_queue(name="two_params")
    def two_params(a, b: str, context=None) -> str:
        return f"{a}{b}"
'''
#: Served by the module's ``server``; ``two_params`` only by the test of the ``curl`` line.
QUEUES = ("fast", "slow", "failing", "saving")
STOP_WITHIN_S = 15.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment without the caller's conveyor settings, with a private HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(HOME=str(home), COLUMNS="200", **extra)
    return env


def stop_process(process: subprocess.Popen[Any]) -> int:
    """SIGTERM, then the exit code; a process that hangs is killed and the test fails."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"{process.args!r} did not exit within {STOP_WITHIN_S} s of SIGTERM")


@dataclass
class Server:
    """A ``conveyor serve`` subprocess and what is needed to talk to it."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes]
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return home_of(self.folder)

    @property
    def store_url(self) -> str:
        return store_url_of(self.folder)

    @property
    def env(self) -> dict[str, str]:
        return clean_env(self.home, CONVEYOR_URL=self.url, CONVEYOR_TOKEN=self.token)

    def cli(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m conveyor ARGS`` as a user would, in the server's folder."""
        return run_cli(self.folder, *args, stdin=stdin, env=self.env if env is None else env,
                       timeout=timeout)

    def log(self) -> str:
        return (self.folder / "serve.log").read_text()

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=10
        )

    def task(self, task_id: str) -> dict[str, Any]:
        with self.http() as http:
            response = http.get(f"/v2/task/{task_id}/")
            response.raise_for_status()
            task: dict[str, Any] = response.json()
            return task

    def put(self, name: str, body: dict[str, Any] | None = None) -> str:
        with self.http() as http:
            response = http.post(f"/taskqueue/{name}", content=orjson.dumps(body or {}))
            response.raise_for_status()
            task_id: str = response.json()["task_id"]
            return task_id

    def wait_status(self, task_id: str, wanted: set[TaskStatus], within: float = 30) -> str:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            status = self.task(task_id)["status"]
            if status in wanted or is_terminal(TaskStatus(status)):
                return str(status)
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} never reached {wanted}")


def run_cli(
    folder: Path, *args: str, stdin: str | None = None, env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """``python -m conveyor ARGS`` in ``folder``, by default without the caller's settings."""
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args], input=stdin, capture_output=True, text=True,
        env=clean_env(home_of(folder)) if env is None else env, cwd=folder, timeout=timeout,
    )


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _shown_token(log: str) -> str:
    """The token ``serve`` prints once it is ready (``  token  cv_…``)."""
    for line in log.splitlines():
        label, _, value = line.strip().partition(" ")
        if label == "token" and value.strip():
            return value.strip()
    return ""


def home_of(folder: Path) -> Path:
    """A private HOME, so no ~/.conveyor/config.toml of the machine is read."""
    home = folder / "home"
    home.mkdir(exist_ok=True)
    return home


def store_url_of(folder: Path) -> str:
    return f"sqlite:///{folder / '.conveyor' / 'conveyor.db'}"


def start_server(folder: Path, specs: Sequence[str] = ()) -> Server:
    """``conveyor serve`` on a free port with the handlers above; waits for /healthz."""
    folder.mkdir(parents=True, exist_ok=True)
    handlers = folder / "handlers.py"
    handlers.write_text(textwrap.dedent(HANDLERS))
    specs = specs or [f"handlers.py:{name}" for name in QUEUES]
    port = free_port()
    with (folder / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "serve", *specs, "--port", str(port),
             "--store", store_url_of(folder), *sandbox_flags(folder)],
            cwd=folder, env=clean_env(home_of(folder)), stdout=log, stderr=subprocess.STDOUT,
        )
    server = Server(folder, port, process)
    deadline = time.monotonic() + 30
    while not server.token:
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError("conveyor serve did not start:\n" + server.log())
        time.sleep(0.1)
        server.token = _shown_token(server.log()) if _healthy(server.url) else ""
    assert server.token == (folder / ".conveyor" / "token").read_text().strip()
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``conveyor serve`` per test module; it must stop cleanly on SIGTERM."""
    running = start_server(tmp_path_factory.mktemp("serve"))
    yield running
    assert stop_process(running.process) == 0, running.log()


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exactly one ``error:`` line on stderr and no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def task_failure_line(result: subprocess.CompletedProcess[str]) -> str:
    """A waited-for task did not complete: its one ``error:`` line, after the ``task ID`` line."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]
    return errors[0]
