"""A real ``conveyor server`` (or ``serve``) subprocess on a given store, started with flags."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.cli.conftest import clean_env, free_port, stop_process


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path_or_url: str, token: str | None = None) -> httpx.Response:
        """GET a path of this gateway (a full URL is sent here too, by its path and query)."""
        parts = httpx.URL(path_or_url)
        target = parts.raw_path.decode() if parts.is_absolute_url else path_or_url
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + target, headers=headers, timeout=10)

    def task(self, task_id: str, token: str) -> dict[str, Any]:
        response = self.get(f"/v2/task/{task_id}/", token)
        response.raise_for_status()
        task: dict[str, Any] = response.json()
        return task

    def stop(self) -> int:
        return stop_process(self.process)


def start_gateway(
    folder: Path,
    store_url: str,
    *args: str,
    command: Sequence[str] = ("server",),
    env: dict[str, str] | None = None,
) -> GatewayProcess:
    """``conveyor server ARGS`` (or another ``command``) on a free port, in ``folder``;
    returns once ``/readyz`` answers 200."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = folder / f"server-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", *command, "--store", store_url,
             "--port", str(port), *args],
            cwd=folder, env={**clean_env(folder), **(env or {})},
            stdout=log, stderr=subprocess.STDOUT,
        )
    gateway = GatewayProcess(process, port, log_path)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{gateway.url}/readyz", timeout=1).status_code == 200:
                return gateway
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"conveyor {' '.join(command)} did not start:\n{gateway.log()}")
        time.sleep(0.1)
