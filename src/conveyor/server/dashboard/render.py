"""Jinja2 templates shipped in the package, autoescaped, with the filters the pages share."""

from __future__ import annotations

import math
from typing import Any

import jinja2
import orjson
from starlette.responses import HTMLResponse

from conveyor.server.dashboard.session import PREFIX
from conveyor.tasks import TERMINAL, TaskStatus


def when(iso: str | None) -> str:
    """``2026-11-28T19:29:35.123456Z`` → ``2026-11-28 19:29:35Z``; ``—`` for none."""
    if not iso:
        return "—"
    return iso.replace("T", " ").split(".")[0].removesuffix("Z") + "Z"


def duration(seconds: float | None) -> str:
    """``duration_s`` as ``350 ms``, ``1.2 s``, ``3 min 4 s``, ``2 h 5 min``; blank for none
    (the task has not ended). ``dashboard.js`` has the same function for live rows."""
    if seconds is None:
        return ""
    # Each unit is chosen after rounding (half up, as JavaScript's Math.round), so 59.96 s is
    # "1 min 0 s", never "60.0 s".
    if _round(seconds * 1000) < 1000:
        return f"{_round(seconds * 1000)} ms"
    if _round(seconds * 10) < 600:
        return f"{_round(seconds * 10) / 10:.1f} s"
    whole = _round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    return f"{whole // 3600} h {whole % 3600 // 60} min"


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def pretty(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def pretty_text(text: str) -> str:
    """A JSON text (such as a stub's config) indented; other text unchanged."""
    try:
        return pretty(orjson.loads(text))
    except orjson.JSONDecodeError:
        return text


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("conveyor.server.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters.update(
    when=when, duration=duration, pretty=pretty, pretty_text=pretty_text
)
_env.globals.update(
    prefix=PREFIX,
    statuses=[status.value for status in TaskStatus],
    terminal=sorted(status.value for status in TERMINAL),
)


def html(template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    body = _env.get_template(template).render(**context)
    return HTMLResponse(body, status_code=status_code, headers={"Cache-Control": "no-store"})
