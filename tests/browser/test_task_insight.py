"""The task page sees into a task (DESIGN A8) in headless Chromium against a real
``conveyor serve``: its log follows a running task without a reload and keeps every line once
it ends, stderr told apart from stdout; its input (escaped) and its attempts; the tasks list's
duration column. ``screenshots/task_logs.png`` is the log panel."""

from __future__ import annotations

from typing import Any

from conveyor.server.dashboard.render import duration
from tests.browser.conftest import SCREENSHOTS, Server, badge_is, screenshot

LINES = "els => els.map(e => e.textContent)"


def printed(lines: int, attempt: int = 1) -> list[str]:
    """What ``handlers.chatty`` prints in one attempt, in order."""
    return [f"line {n} of attempt {attempt}" for n in range(lines)]


def test_log_follows_a_running_task_then_keeps_every_line(page: Any, server: Server) -> None:
    lines = 60  # one every 0.1 s: about 6 s of printing, more than the panel's height
    task_id = server.put("chatty", lines=lines, every=0.1)
    server.wait_status(task_id, "RUNNING")
    page.goto(f"{server.url}/dashboard/tasks/{task_id}")
    page.evaluate("window.notReloaded = true")
    at_load = page.eval_on_selector_all("#log .ln .x", LINES)
    assert page.get_attribute("#logs", "data-follow") == "1"
    assert printed(lines)[-1] not in at_load  # still to be printed when the page loaded
    panel = page.locator("#log")

    # The panel scrolls in its own box. A reader who scrolled up stays where they are while
    # lines printed after the page loaded come in, no reload...
    panel.evaluate("e => new Promise(done => { const wait = () => e.scrollHeight > "
                   "e.clientHeight + 40 ? done() : setTimeout(wait, 50); wait(); })")
    count = panel.evaluate("e => { e.scrollTop = 0; return e.querySelectorAll('.ln').length; }")
    page.wait_for_function("(n) => document.querySelectorAll('#log .ln').length > n + 3",
                           arg=count)
    assert panel.evaluate("e => e.scrollTop") == 0
    # ... and back at the bottom, the panel follows it to the last line.
    panel.evaluate("e => { e.scrollTop = e.scrollHeight; }")
    page.wait_for_function(
        "(text) => [...document.querySelectorAll('#log .ln .x')].some(e => e.textContent === text)",
        arg=printed(lines)[-1], timeout=15_000,
    )
    badge_is(page, "#task [data-field=status]", "COMPLETE")
    page.wait_for_function("() => document.getElementById('log-note').textContent"
                           ".includes('ended COMPLETE')")
    assert page.evaluate("window.notReloaded") is True
    assert page.eval_on_selector_all("#log .ln .x", LINES) == printed(lines)  # each line once
    assert panel.evaluate("e => e.scrollHeight - e.scrollTop - e.clientHeight < 8")

    # stderr (every third line) is marked and tinted; stdout is not.
    stderr = page.eval_on_selector_all("#log .ln[data-stream=stderr] .x", LINES)
    assert stderr == [text for n, text in enumerate(printed(lines)) if n % 3 == 2]
    assert set(page.eval_on_selector_all("#log .ln[data-stream=stderr] .s", LINES)) == {"err"}
    assert set(page.eval_on_selector_all("#log .ln[data-stream=stdout] .s", LINES)) == {"out"}
    tint = "e => getComputedStyle(e).backgroundColor"
    assert (page.eval_on_selector("#log .ln[data-stream=stderr]", tint)
            != page.eval_on_selector("#log .ln[data-stream=stdout]", tint))
    panel.screenshot(path=str(SCREENSHOTS / "task_logs.png"))

    # Opened after the end, the page has every line from the server, and streams nothing.
    page.reload()
    assert page.get_attribute("#logs", "data-follow") is None
    assert page.eval_on_selector_all("#log .ln .x", LINES) == printed(lines)


def test_task_page_shows_the_input_escaped_and_each_attempt(page: Any, server: Server) -> None:
    note = "<b>not bold</b> & <script>alert(1)</script>"
    task_id = server.put("chatty", lines=3, every=0, fail_first=True, note=note)
    server.wait_status(task_id, "COMPLETE")
    page.goto(f"{server.url}/dashboard/tasks/{task_id}")

    text = page.inner_text("#input")
    assert f'"note": "{note}"' in text and '"fail_first": true' in text
    assert page.locator("#input *").count() == 0  # shown as text, never as markup

    rows = page.locator("#attempts tbody tr")
    assert rows.count() == 2
    first, second = rows.nth(0), rows.nth(1)
    assert first.get_attribute("data-attempt") == "1"
    assert first.locator("[data-field=outcome]").inner_text() == "RETRY"
    assert "RuntimeError: first attempt fails" in first.locator("[data-field=error]").inner_text()
    assert second.locator("[data-field=outcome]").inner_text() == "COMPLETE"
    assert second.locator("[data-field=error]").inner_text() == "—"
    for row in (first, second):
        assert row.locator("[data-field=container_id]").inner_text().startswith("taskqueue-")

    # Both attempts' lines, the second's after its mark.
    assert page.eval_on_selector_all("#log .ln .x", LINES) == printed(3, 1) + printed(3, 2)
    assert page.eval_on_selector_all("#log .attempt-mark", LINES) == ["attempt 2"]
    screenshot(page, "task_attempts.png")


def test_tasks_list_shows_each_tasks_duration(page: Any, server: Server) -> None:
    done = server.put("chatty", lines=2, every=0.6)
    server.wait_status(done, "COMPLETE")
    waiting = server.put("slow", seconds=120)
    page.goto(f"{server.url}/dashboard/tasks")
    seconds = float(page.inner_text(f"tr[data-task-id='{done}'] [data-field=duration]")
                    .removesuffix(" s"))
    assert 1.2 <= seconds < 10  # started_at to ended_at, as "1.2 s"
    assert page.inner_text(f"tr[data-task-id='{waiting}'] [data-field=duration]") == ""
    server.cancel(waiting)

    # The page's script (live rows) formats as the server does.
    values = [None, 0.0004, 0.35, 0.9996, 1.2, 1.25, 59.94, 59.96, 184.2, 3599.6, 7500.0]
    assert [duration(v) for v in values] == [
        "", "0 ms", "350 ms", "1.0 s", "1.2 s", "1.3 s", "59.9 s", "1 min 0 s", "3 min 4 s",
        "1 h 0 min", "2 h 5 min",
    ]
    assert page.evaluate("values => values.map(duration)", values) == [duration(v) for v in values]
