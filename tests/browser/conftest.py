"""A real ``conveyor serve`` in a subprocess and headless Debian Chromium driven by Playwright.

Without ``/usr/bin/chromium`` the tests are skipped locally and fail when ``CI=true``.
Playwright never downloads a browser here: it launches the system one.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.sandboxing import sandbox_flags

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
HANDLERS = Path(__file__).with_name("handlers.py")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
TOKEN = "cv_browser_test_token"
QUEUES = ("work", "slow", "backlog", "chatty", "boom", "long_named")


@dataclass
class Server:
    url: str
    token: str
    store_url: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def put(self, queue: str, **kwargs: Any) -> str:
        response = httpx.post(f"{self.url}/taskqueue/{queue}", json=kwargs, headers=self.auth)
        response.raise_for_status()
        task_id = response.json()["task_id"]
        assert isinstance(task_id, str)
        return task_id

    def task(self, task_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/v2/task/{task_id}/", headers=self.auth)
        response.raise_for_status()
        found = response.json()
        assert isinstance(found, dict)
        return found

    def cancel(self, *task_ids: str) -> None:
        httpx.post(f"{self.url}/v2/task/cancel/", json={"task_ids": list(task_ids)},
                   headers=self.auth).raise_for_status()

    def wait_status(self, task_id: str, status: str, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.task(task_id)
            if found["status"] == status:
                return found
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} is {found['status']}, not {status}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, chromium: Path) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    store_url = f"sqlite:///{folder}/conveyor.db"
    port = _free_port()
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve",
         *(f"{HANDLERS}:{name}" for name in QUEUES),
         "--port", str(port), "--token", TOKEN, "--store", store_url, *sandbox_flags(folder)],
        cwd=folder, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((folder / "serve.log").read_text())
            time.sleep(0.1)
        yield Server(url, TOKEN, store_url)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: Server) -> Iterator[Any]:
    """A signed-in page, in a fresh browser context (its own cookies)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    signed_in = context.new_page()
    violations = csp_violations(signed_in)
    sign_in(signed_in, server)
    yield signed_in
    context.close()
    assert violations == [], "the page broke its Content-Security-Policy"


def csp_violations(page: Any) -> list[str]:
    """The Content-Security-Policy refusals the browser reports on ``page`` (filled as they
    come): an inline script or style, or a resource the policy does not allow."""
    found: list[str] = []
    page.on("console", lambda message: found.append(message.text)
            if "Content Security Policy" in message.text else None)
    return found


def sign_in(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/dashboard/")
    page.fill("#token", server.token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/dashboard/")


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)


def badge_is(page: Any, selector: str, status: str) -> None:
    """Wait until the element at ``selector`` reads ``status`` (a live update)."""
    page.wait_for_function(
        "([selector, status]) => document.querySelector(selector)?.textContent === status",
        arg=[selector, status],
    )
