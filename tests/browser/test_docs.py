"""``/docs`` renders with no network beyond the gateway: every request to a host
other than the loopback one is aborted, as on a machine without internet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import Server, csp_violations

LOOPBACK = {"127.0.0.1", "localhost", "[::1]"}


@pytest.fixture
def offline(browser: Any) -> Iterator[tuple[Any, list[str]]]:
    """A page whose requests off the loopback host are aborted, and the list of those URLs."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(20_000)
    blocked: list[str] = []

    def route(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname in LOOPBACK or url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", route)
    yield context.new_page(), blocked
    context.close()


def test_swagger_ui_renders_offline(offline: tuple[Any, list[str]], server: Server) -> None:
    page, blocked = offline
    violations = csp_violations(page)
    answer = page.goto(f"{server.url}/docs")
    assert "script-src 'self' 'sha256-" in answer.headers["content-security-policy"]
    operation = page.locator(".opblock", has=page.locator("[data-path='/v2/task/{task_id}/']"))
    operation.first.wait_for(state="visible")
    page.wait_for_load_state("networkidle")
    assert blocked == []
    assert violations == []  # Swagger UI runs under the page's Content-Security-Policy

