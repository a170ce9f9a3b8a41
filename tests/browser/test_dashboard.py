"""The dashboard in headless Chromium against a real ``conveyor serve``: sign-in, live queue
depth, live task statuses, cancel, outputs, errors. Each page's screenshot lands in
``screenshots/`` (the README shows one)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from conveyor.queue_config import QueueConfig
from conveyor.server.run import DEFAULT_WORKSPACE
from conveyor.server.store import open_store
from tests.browser.conftest import Server, badge_is, csp_violations, screenshot


def test_sign_in_rejects_a_wrong_token_and_sign_out_forgets_the_cookie(
    browser: Any, server: Server
) -> None:
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    page = context.new_page()
    violations = csp_violations(page)
    page.goto(f"{server.url}/dashboard/tasks")
    assert "/dashboard/signin" in page.url
    screenshot(page, "signin.png")
    # The form carries the CSRF token of its HttpOnly pre-session cookie.
    assert len(page.input_value("input[name=csrf]")) == 64
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    assert "not valid" in page.inner_text("[role=alert]")

    page.fill("#token", server.token)
    with page.expect_response(lambda r: r.url.endswith("/dashboard/tasks")) as landed:
        page.click("button[type=submit]")
    page.wait_for_url(f"{server.url}/dashboard/tasks")  # back where the sign-in began
    headers = landed.value.all_headers()
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["content-security-policy"].startswith("default-src 'self'")
    cookies = {c["name"]: c for c in context.cookies()}
    cookie = cookies["conveyor_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert cookie["value"] != server.token and server.token not in str(cookies)
    assert set(cookies) == {"conveyor_session"}  # the pre-session cookie is gone
    assert page.evaluate("document.cookie") == ""  # scripts never see the cookie

    # Sign-out is a form's button: a POST carrying the session's CSRF token.
    with page.expect_request(lambda r: r.url.endswith("/dashboard/signout")) as sent:
        page.click("#signout")
    assert sent.value.method == "POST" and "csrf=" in (sent.value.post_data or "")
    page.wait_for_url("**/dashboard/signin")
    page.goto(f"{server.url}/dashboard/")
    assert "/dashboard/signin" in page.url
    # The signed-out session's id is refused even if a copy of the cookie is sent again.
    context.add_cookies([{**cookie, "sameSite": "Strict"}])
    page.goto(f"{server.url}/dashboard/")
    assert "/dashboard/signin" in page.url
    assert violations == []
    context.close()


def test_queues_page_shows_depth_change_without_reload(page: Any, server: Server) -> None:
    depth = "tr[data-queue=backlog] [data-field=queue_depth]"
    assert page.inner_text(depth) == "0"
    page.evaluate("window.notReloaded = true")
    ids = [server.put("backlog", seconds=120) for _ in range(4)]
    # One may have started; at least three wait.
    page.wait_for_function(
        "(s) => Number(document.querySelector(s).textContent) >= 3", arg=depth
    )
    screenshot(page, "queues.png")
    server.cancel(*ids)
    badge_is(page, depth, "0")
    assert page.evaluate("window.notReloaded") is True


def test_queues_page_says_where_each_route_goes_and_what_no_agent_runs(
    page: Any, server: Server
) -> None:
    """A served version this serve does not run (left by an earlier serve) is flagged."""

    async def left_behind() -> None:
        store = open_store(server.store_url)
        await store.open()
        try:
            ws = await store.ensure_workspace(DEFAULT_WORKSPACE)
            config = QueueConfig(name="orphan", handler="gone.py:orphan", code_path="/nowhere")
            await store.upsert_serve_stub(ws.id, "orphan", config.to_dict(), b"")
        finally:
            await store.close()

    with ThreadPoolExecutor(1) as thread:  # Playwright's sync API holds this thread's loop
        thread.submit(asyncio.run, left_behind()).result()
    page.reload()
    served = page.locator("tr[data-queue=backlog] .version.routed")
    assert served.inner_text().startswith("v1") and "route" in served.inner_text()
    assert page.locator("tr[data-queue=backlog] [data-warning]").count() == 0
    orphan = page.locator("tr[data-queue=orphan]")
    orphan.wait_for()
    assert "unrun" in (orphan.locator(".version.routed").get_attribute("class") or "")
    warning = orphan.locator("[data-warning]").inner_text()
    assert warning == "no agent runs orphan v1: its tasks wait"


def test_task_goes_pending_running_complete_live(browser: Any, page: Any, server: Server) -> None:
    ahead = server.put("work", seconds=4, label="ahead")  # keeps the one container busy
    watched = server.put("work", seconds=2, label="watched")
    page.goto(f"{server.url}/dashboard/tasks?queue=work")
    row = f"tr[data-task-id='{watched}'] [data-field=status]"
    assert page.inner_text(row) == "PENDING"
    detail = page.context.new_page()  # the task page watches the same task at the same time
    detail.goto(f"{server.url}/dashboard/tasks/{watched}")
    assert detail.inner_text("#task [data-field=status]") == "PENDING"
    for tab in (page, detail):
        tab.evaluate("window.notReloaded = true")

    badge_is(page, row, "RUNNING")
    badge_is(detail, "#task [data-field=status]", "RUNNING")
    badge_is(page, row, "COMPLETE")
    badge_is(detail, "#task [data-field=status]", "COMPLETE")
    detail.wait_for_selector("#task a.output")  # the detail refreshed with the outputs
    assert '"label": "watched"' in detail.inner_text("#result")
    for tab in (page, detail):
        assert tab.evaluate("window.notReloaded") is True
    assert page.inner_text(f"tr[data-task-id='{ahead}'] [data-field=status]") == "COMPLETE"
    screenshot(detail, "task.png")


def test_task_page_keeps_the_queues_stats_apart_from_the_tasks_fields(
    page: Any, server: Server
) -> None:
    task_id = server.put("work", seconds=0, label="apart")
    server.wait_status(task_id, "COMPLETE")
    page.goto(f"{server.url}/dashboard/tasks/{task_id}")
    fields = page.inner_text("#task-fields")
    assert "Attempts" in fields and "Container" in fields
    assert "Queue depth" not in fields and "Live containers" not in fields
    stats = page.locator("#queue-stats")
    assert stats.get_attribute("aria-labelledby") == "queue-stats-title"
    assert stats.locator("#queue-stats-title").inner_text().startswith("Queue work")
    assert "Queue depth" in stats.inner_text() and "Live containers" in stats.inner_text()
    stats.locator("a", has_text="work").first.click()
    page.wait_for_url(f"{server.url}/dashboard/tasks?queue=work")


def test_cancel_button_asks_then_cancels_a_running_task(page: Any, server: Server) -> None:
    task_id = server.put("slow", seconds=120)
    server.wait_status(task_id, "RUNNING")
    page.goto(f"{server.url}/dashboard/tasks/{task_id}")
    badge_is(page, "#task [data-field=status]", "RUNNING")
    cancels: list[str] = []
    page.on("request", lambda r: cancels.append(r.url) if "/live/cancel" in r.url else None)
    dialog = page.locator("dialog#confirm-cancel")

    page.click("#cancel")  # asks first; keeping the task (or Escape) sends nothing
    assert dialog.is_visible() and task_id in dialog.inner_text()
    screenshot(page, "cancel_confirm.png")
    page.click("#confirm-cancel button[value=keep]")
    dialog.wait_for(state="hidden")
    page.click("#cancel")
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.reload()  # after a round trip to the server, a cancel sent by mistake would show
    assert cancels == [] and server.task(task_id)["status"] == "RUNNING"
    badge_is(page, "#task [data-field=status]", "RUNNING")

    page.click("#cancel")
    page.click("#confirm-cancel button[value=cancel]")
    badge_is(page, "#task [data-field=status]", "CANCELLED")
    page.wait_for_selector("#cancel", state="detached")  # no button on a terminal task
    assert server.task(task_id)["status"] == "CANCELLED" and len(cancels) == 1


def test_output_link_downloads_the_file(page: Any, server: Server) -> None:
    task_id = server.put("work", seconds=0, label="file")
    server.wait_status(task_id, "COMPLETE")
    page.goto(f"{server.url}/dashboard/tasks/{task_id}")
    link = page.locator("a.output", has_text="report.txt")
    with page.expect_download() as download:
        link.click()
    path = download.value.path()
    assert path is not None
    with open(path, "rb") as file:
        assert file.read() == f"report file of {task_id}\n".encode()
    # The link is the API's signed URL: it works without any token or cookie.
    assert httpx.get(link.get_attribute("href")).content.startswith(b"report file")


def test_failed_task_shows_error_and_traceback(page: Any, server: Server) -> None:
    task_id = server.put("boom", message="no such image")
    server.wait_status(task_id, "FAILED")
    page.goto(f"{server.url}/dashboard/tasks/{task_id}")
    assert "ValueError: no such image" in page.inner_text(".error-box")
    assert "Traceback" in page.inner_text(".traceback")
    screenshot(page, "task_failed.png")


def test_tasks_page_filters_and_paginates(page: Any, server: Server) -> None:
    page.goto(f"{server.url}/dashboard/tasks")  # the earlier tests' tasks, all statuses
    screenshot(page, "tasks.png")
    response = httpx.post(f"{server.url}/taskqueue/boom/batch", headers=server.auth,
                          json={"tasks": [{"message": f"m{i}"} for i in range(55)]})
    ids = response.json()["task_ids"]
    server.wait_status(ids[-1], "FAILED")

    rows = "rows => rows.map(r => r.dataset.taskId)"
    page.goto(f"{server.url}/dashboard/tasks?queue=boom&status=ERROR")
    assert page.is_checked("input[name=status][value=FAILED]")
    first = page.eval_on_selector_all("tr[data-task-id]", rows)
    assert first == ids[::-1][:50]  # newest first, 50 a page
    page.click("#next-page")
    second = page.eval_on_selector_all("tr[data-task-id]", rows)
    assert second[:5] == ids[::-1][50:]  # the API's cursor: no gap, no repeat
    page.goto(f"{server.url}/dashboard/tasks?status=bogus")
    assert "unknown status" in page.inner_text("[role=alert]")


def test_an_unknown_queue_is_said_not_shown_as_all_queues(page: Any, server: Server) -> None:
    answer = page.goto(f"{server.url}/dashboard/tasks?queue=nosuch")
    assert answer is not None and answer.status == 404
    assert page.inner_text("[role=alert]") == "unknown queue 'nosuch'"
    picked = page.eval_on_selector("select[name=queue]", "s => s.selectedOptions[0].value")
    assert picked == "nosuch"
    assert page.locator("table.tasks").count() == 0  # no "No tasks match" as if it were empty


def test_dashboard_scripts_need_the_session_and_its_csrf_token(
    browser: Any, page: Any, server: Server
) -> None:
    response = httpx.post(f"{server.url}/dashboard/live/cancel", json={"task_ids": []})
    assert response.status_code == 401
    # The raw token in a cookie (as earlier versions kept it) is no session.
    raw = httpx.Client(base_url=server.url, cookies={"conveyor_session": server.token,
                                                     "conveyor_token": server.token})
    assert raw.post("/dashboard/live/cancel", json={"task_ids": []}).status_code == 401
    # The signed-in browser's session cookie without the page's CSRF header (what a
    # cross-site request would carry, SameSite aside) is refused.
    (session,) = [c["value"] for c in page.context.cookies() if c["name"] == "conveyor_session"]
    signed_in = httpx.Client(base_url=server.url, cookies={"conveyor_session": session})
    assert signed_in.post("/dashboard/live/cancel", json={"task_ids": []}).status_code == 403
    csrf = page.eval_on_selector("body", "b => b.dataset.csrf")
    answer = signed_in.post("/dashboard/live/cancel", json={"task_ids": []},
                            headers={"X-Conveyor-CSRF": csrf})
    assert answer.status_code == 200
    # The JSON API itself still wants a Bearer token: the cookie does not widen it.
    assert signed_in.get("/v2/task/").status_code == 401
