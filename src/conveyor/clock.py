"""Time helpers. Durations are float seconds; stored instants are integer microseconds (UTC)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from functools import lru_cache


def now() -> float:
    return time.time()


def to_us(t: float) -> int:
    return round(t * 1_000_000)


def from_us(us: int) -> float:
    return us / 1_000_000


def iso(us: int | None) -> str | None:
    """ISO 8601 UTC with microseconds and a ``Z``: ``2026-11-28T19:29:35.123456Z``."""
    if us is None:
        return None
    secs, micros = divmod(us, 1_000_000)
    return f"{_iso_second(secs)}.{micros:06d}Z"


@lru_cache(maxsize=4096)
def _iso_second(secs: int) -> str:
    # A task JSON has up to six instants, mostly of a few seconds: formatting the second
    # once is most of the cost of a status read's rendering (profiled).
    return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def parse_iso(text: str) -> int:
    """Parse an ISO 8601 timestamp (``Z`` or an offset; naive means UTC) to microseconds."""
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000 + dt.microsecond



_DURATION = re.compile(r"(\d{1,12}(?:\.\d{1,6})?)([smhd]?)")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds of a duration such as ``7d``, ``12h``, ``30m``, ``45s`` or a bare number of
    seconds; ``ValueError`` for anything else."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration such as 7d, 12h, 30m, 45s or 3600")
    return float(match[1]) * _UNITS[match[2]]
