"""The dashboard's version buttons (stop, start) and a finished task's Replay: each asks first,
then does what the API does."""

from __future__ import annotations

from typing import Any

import httpx

from tests.browser.conftest import Server, screenshot


def test_stop_and_start_a_version_from_the_queues_page(page: Any, server: Server) -> None:
    calls: list[str] = []
    page.on("request", lambda r: calls.append(r.url) if "/live/deployments/" in r.url else None)
    row = page.locator("tr[data-queue=boom]")
    dialog = page.locator("dialog#confirm-version")
    row.locator("[data-version-action=stop]").click()  # asks first; keeping sends nothing
    assert dialog.is_visible()
    assert page.inner_text("#confirm-version-title") == "Stop boom v1?"
    assert "takes no new tasks" in dialog.inner_text()
    screenshot(page, "version_stop_confirm.png")
    page.click("#confirm-version button[value=keep]")
    dialog.wait_for(state="hidden")
    assert calls == []
    row.locator("[data-version-action=stop]").click()
    page.click("#confirm-version-go")
    page.locator("tr[data-queue=boom] .version.stopped").wait_for()
    assert page.inner_text("#version-note") == "boom v1 stopped"
    assert "every version of boom is stopped" in row.locator("[data-warning]").inner_text()
    refused = httpx.post(f"{server.url}/taskqueue/boom", json={}, headers=server.auth)
    assert refused.status_code == 409
    assert refused.json() == {"error": "version v1 of boom is stopped"}
    screenshot(page, "version_stopped.png")

    row.locator("[data-version-action=start]").click()
    assert page.inner_text("#confirm-version-title") == "Start boom v1?"
    page.click("#confirm-version-go")
    page.locator("tr[data-queue=boom] [data-version-action=stop]").wait_for()
    assert page.locator("tr[data-queue=boom] .version.stopped").count() == 0
    assert len(calls) == 2
    assert httpx.post(f"{server.url}/taskqueue/boom", json={},
                      headers=server.auth).status_code == 200


def test_replay_asks_then_links_to_the_new_task(page: Any, server: Server) -> None:
    running = server.put("slow", seconds=120)
    server.wait_status(running, "RUNNING")
    page.goto(f"{server.url}/dashboard/tasks/{running}")
    assert page.locator("#replay").count() == 0  # only a finished task is replayed
    server.cancel(running)

    failed = server.put("boom", message="try me again")
    server.wait_status(failed, "FAILED")
    page.goto(f"{server.url}/dashboard/tasks/{failed}")
    replays: list[str] = []
    page.on("request", lambda r: replays.append(r.url) if "/live/replay" in r.url else None)
    dialog = page.locator("dialog#confirm-replay")
    page.click("#replay")
    assert dialog.is_visible() and failed in dialog.inner_text()
    screenshot(page, "replay_confirm.png")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert replays == []
    page.click("#replay")
    page.click("#confirm-replay button[value=same]")
    link = page.locator("#replay-link")
    link.wait_for()
    new_id = link.inner_text()
    assert server.task(new_id)["replay_of"] == failed and len(replays) == 1
    link.click()
    page.wait_for_url(f"{server.url}/dashboard/tasks/{new_id}")
    assert page.inner_text("#replay-of") == failed
    server.wait_status(new_id, "FAILED")
