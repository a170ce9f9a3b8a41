"""A schedule's clock: a cron expression read in a time zone, and which tick is due.

Pure: no I/O and no clock of its own. Instants are integer microseconds since the epoch
(UTC), as the store keeps them; the cron expression is read in the schedule's time zone
(``zoneinfo``) by cronsim, which follows Debian cron across daylight-saving changes.

Every maker of ticks (each gateway and agent) computes the same instants from the same
expression, so a tick's instant is a key they can agree on (``server/schedules.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from conveyor.errors import ConfigError

#: Cron's nicknames, as the five fields they stand for.
MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
#: A tick made this much after its instant is a catch-up even when no tick was skipped: it
#: was missed while nothing ran (makers look every second or so).
LATE_S = 30.0
_WHEN_MAX = 200


@dataclass(frozen=True, slots=True)
class Due:
    """The tick to make now: its instant, and whether it is a catch-up (it stands for
    ticks that were not made on time)."""

    tick_at: int
    catch_up: bool


@dataclass(frozen=True, slots=True)
class Cron:
    """``when`` (five cron fields or a nickname such as ``@hourly``) in ``timezone``."""

    when: str
    timezone: str
    #: ``when`` as five fields (a nickname spelled out).
    fields: str
    zone: ZoneInfo

    @classmethod
    def parse(cls, when: object, timezone: object = "UTC") -> Cron:
        """Check both; a ``ConfigError`` starts with the name of the field at fault."""
        zone = _zone(timezone)
        if not isinstance(when, str) or not when.strip() or len(when) > _WHEN_MAX:
            raise ConfigError(
                f"when must be a cron expression such as '*/5 * * * *' or '@hourly', "
                f"got {when!r:.80}"
            )
        fields = MACROS.get(when.strip().lower(), when.strip())
        if fields.startswith("@") or len(fields.split()) != 5:
            raise ConfigError(
                f"when {when!r} is not understood: give five fields (minute hour day month "
                f"weekday) or one of {', '.join(MACROS)}"
            )
        try:
            CronSim(fields, datetime(2000, 1, 1, tzinfo=zone))
        except CronSimError as exc:
            raise ConfigError(f"when {when!r} is not a valid cron expression: {exc}") from None
        assert isinstance(timezone, str)
        return cls(when, timezone, fields, zone)

    def after(self, t: int, n: int) -> list[int]:
        """The first ``n`` instants after ``t`` (fewer if the expression runs out)."""
        return _first(CronSim(self.fields, _local(t, self.zone)), n)

    def at_or_before(self, t: int, n: int) -> list[int]:
        """The last ``n`` instants at or before ``t``, newest first."""
        # cronsim's reverse walk leaves out its start when that has no microseconds.
        start = _local(t, self.zone).replace(microsecond=0) + timedelta(microseconds=1)
        return _first(CronSim(self.fields, start, reverse=True), n)

    def due(self, since: int, now: int) -> Due | None:
        """The tick to make at ``now`` when the last one made (or the schedule's creation)
        was at ``since``: the latest instant after ``since``, at most one however many were
        missed; None when there is none."""
        latest = self.at_or_before(now, 2)
        if not latest or latest[0] <= since:
            return None
        skipped = len(latest) > 1 and latest[1] > since
        late = now - latest[0] > LATE_S * 1_000_000
        return Due(latest[0], skipped or late)


def _first(times: Iterator[datetime], n: int) -> list[int]:
    """The first ``n`` instants of ``times`` (cronsim stops after 50 years without one)."""
    return [_us(dt) for dt in itertools.islice(times, n)]


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 100:
        raise ConfigError(f"timezone must be an IANA time zone name such as 'UTC' or "
                          f"'Europe/Paris', got {name!r:.80}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone {name!r} is not a known time zone; use an IANA name such as 'UTC' or "
            "'Europe/Paris'"
        ) from None


def _local(t: int, zone: ZoneInfo) -> datetime:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=t)).astimezone(zone)


def _us(dt: datetime) -> int:
    delta = dt.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
