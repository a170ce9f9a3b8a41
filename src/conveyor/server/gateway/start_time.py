"""A task's start time from ``Conveyor-Delay`` / ``Conveyor-Run-At`` (DESIGN A10).

Plain (no web framework), like ``task_body.py``: the gateway's enqueue routes and the direct
producer read the same header values the same way. A mistake is ``BadRequest`` (HTTP 400).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from conveyor import clock
from conveyor.server.gateway.refusals import BadRequest

DELAY_HEADER = "Conveyor-Delay"
RUN_AT_HEADER = "Conveyor-Run-At"
#: The furthest a task may be put off.
MAX_DELAY_S = 365 * 86400
_SECONDS = re.compile(r"[0-9]{1,12}(\.[0-9]{1,6})?")


def start_time(delays: Sequence[str], run_ats: Sequence[str], now: int) -> int | None:
    """The instant (microseconds) a task may start, from the values of each header, or None
    (at once) without either. A time in the past means at once, and is kept as now."""
    if len(delays) + len(run_ats) > 1:
        raise BadRequest(
            f"give one of {DELAY_HEADER} and {RUN_AT_HEADER}, once: "
            f"got {len(delays)} and {len(run_ats)}"
        )
    if delays:
        delay = delays[0].strip()
        if not _SECONDS.fullmatch(delay) or float(delay) > MAX_DELAY_S:
            raise BadRequest(
                f"{DELAY_HEADER} must be seconds from 0 to {MAX_DELAY_S} (a year), "
                f"e.g. 30 or 2.5, got {delay!r:.80}"
            )
        return now + clock.to_us(float(delay))
    if run_ats:
        text = run_ats[0]
        try:
            at = clock.parse_iso(text)
        except (ValueError, OverflowError):
            raise BadRequest(
                f"{RUN_AT_HEADER} must be an ISO 8601 time such as 2026-11-28T19:30:00Z, "
                f"got {text!r:.80}"
            ) from None
        if at > now + clock.to_us(MAX_DELAY_S):
            raise BadRequest(f"{RUN_AT_HEADER} is more than a year ahead: {text!r:.80}")
        return max(at, now)
    return None
