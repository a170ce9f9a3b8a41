"""The pages fit the window at 1280 px and at 420 px wide, with many tasks and long values.

The check: no element's box reaches past the right edge of the viewport, except inside a
``.scroll-x`` container (a table that scrolls in place), which must fit itself; and the document
itself does not scroll sideways. At 1280 px no container scrolls either: everything fits.
``overflow: hidden`` on the page would hide a scrollbar but not the overflowing boxes, so it
cannot pass this check by accident.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import Server, screenshot
from tests.browser.handlers import LONG_NAME

#: Elements past the right edge (as "tag.class right-edge"), and the widths of the document.
OVERFLOW = """(allowScroll) => {
  const width = document.documentElement.clientWidth;
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    const inside = el.parentElement.closest(".scroll-x");
    if (box.width && box.right > width + 0.5 && !inside) {
      out.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(box.right)}`);
    }
    if (!allowScroll && el.matches(".scroll-x") && el.scrollWidth > el.clientWidth) {
      out.push(`scrolling .scroll-x ${el.scrollWidth} > ${el.clientWidth}`);
    }
  }
  return {out, scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth};
}"""


def assert_fits(page: Any, width: int) -> None:
    found = {"url": page.url, **page.evaluate(OVERFLOW, width < 1280)}
    assert found["out"] == [], found
    assert found["scrollWidth"] <= found["innerWidth"], found


@pytest.fixture(scope="module")
def tasks(server: Server) -> list[str]:
    """Sixty finished tasks on the long-named queue (long queue name, container id, result),
    and a failed one with a long message."""
    ids = [server.put(LONG_NAME) for _ in range(60)]
    failed = server.put("boom", message="no such image " + "x" * 300)
    for task_id in (ids[-1], failed):
        server.wait_status(task_id, "FAILED" if task_id == failed else "COMPLETE")
    return [*ids, failed]


@pytest.mark.parametrize("width", [1280, 420])
def test_pages_fit_the_window(page: Any, server: Server, tasks: list[str], width: int) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    suffix = "" if width == 1280 else f"_{width}"
    for path, name in [("/dashboard/", "queues"), ("/dashboard/tasks", "tasks"),
                       (f"/dashboard/tasks/{tasks[-2]}", "task"),
                       (f"/dashboard/tasks/{tasks[-1]}", "task_failed")]:
        page.goto(server.url + path)
        assert_fits(page, width)
        if suffix:
            screenshot(page, f"{name}{suffix}.png")


def test_long_values_are_truncated_with_their_full_text_kept(
    page: Any, server: Server, tasks: list[str]
) -> None:
    page.set_viewport_size({"width": 1280, "height": 800})
    page.goto(f"{server.url}/dashboard/tasks?queue={LONG_NAME}")
    cell = page.locator(f"tr[data-task-id='{tasks[-2]}'] [data-field=queue]")
    assert cell.get_attribute("title") == LONG_NAME
    assert cell.evaluate("e => e.scrollWidth > e.clientWidth")  # cut short, with an ellipsis
    assert cell.evaluate("e => getComputedStyle(e).textOverflow") == "ellipsis"
