"""A schedule's clock (``conveyor.cron``): what ``when`` and ``timezone`` accept, which tick is
due, and ticks that agree whichever way they are walked, across daylight-saving changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.cron import LATE_S, Cron, Due
from conveyor.errors import ConfigError
from conveyor.queue_config import QueueConfig

#: 2026-11-28T00:00:00Z, on a minute.
T0 = int(datetime(2026, 11, 28, tzinfo=UTC).timestamp()) * 1_000_000
MINUTE = 60_000_000


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1_000_000)


@pytest.mark.parametrize(
    ("when", "timezone", "field"),
    [
        ("61 * * * *", "UTC", "when"),
        ("* * * * * *", "UTC", "when"),  # seconds: refused
        ("@reboot", "UTC", "when"),
        ("", "UTC", "when"),
        (5, "UTC", "when"),
        ("0 0 30 2 *", "UTC", "when"),  # never
        ("* * * * *", "Mars/Olympus", "timezone"),
        ("* * * * *", "/etc/localtime", "timezone"),
        ("* * * * *", "", "timezone"),
        ("* * * * *", None, "timezone"),
    ],
)
def test_a_bad_when_or_timezone_names_its_field(when: object, timezone: object, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Cron.parse(when, timezone)
    assert info.value.message.startswith(field)


def test_nicknames_and_names() -> None:
    assert Cron.parse("@hourly").fields == "0 * * * *"
    assert Cron.parse("@DAILY").fields == "0 0 * * *"
    assert Cron.parse("0 9 * JAN-MAR MON-FRI", "Europe/Paris").after(
        at("2026-01-02T12:00:00+01:00"), 1
    ) == [at("2026-01-05T09:00:00+01:00")]


def test_the_config_reads_when_and_timezone() -> None:
    config = QueueConfig(name="n", handler="a.py:f", when="@hourly", timezone="Asia/Tokyo")
    cron = config.cron()
    assert cron is not None and cron.timezone == "Asia/Tokyo"
    assert QueueConfig(name="n", handler="a.py:f").cron() is None
    assert QueueConfig(name="n", handler="a.py:f", when="@hourly").cron() == Cron.parse("@hourly")
    with pytest.raises(ConfigError, match=r"^timezone"):
        QueueConfig(name="n", handler="a.py:f", timezone="UTC")


def test_the_due_tick_is_the_latest_since_the_last_and_one_at_most() -> None:
    cron = Cron.parse("* * * * *")
    assert cron.due(T0 - 1, T0) == Due(T0, False)  # a tick exactly at now is due
    assert cron.due(T0, T0 + MINUTE - 1) is None  # made already
    assert cron.due(T0, T0 + MINUTE + 500_000) == Due(T0 + MINUTE, False)
    # Ten ticks missed: one, the latest, a catch-up.
    assert cron.due(T0, T0 + 11 * MINUTE + 1) == Due(T0 + 11 * MINUTE, True)
    # None skipped, but made late: a catch-up too.
    hourly = Cron.parse("@hourly")
    late = int(LATE_S * 1_000_000) + 1
    assert hourly.due(T0 - 1, T0 + late) == Due(T0, True)
    assert hourly.due(T0 - 1, T0 + late - 2) == Due(T0, False)


def test_a_zone_reads_the_wall_clock() -> None:
    cron = Cron.parse("30 2 * * *", "Europe/Berlin")
    # 02:30 that does not exist (clocks go 02:00 → 03:00) runs once, right after the jump.
    assert cron.after(at("2026-03-28T12:00:00+01:00"), 2) == [
        at("2026-03-29T03:00:00+02:00"), at("2026-03-30T02:30:00+02:00"),
    ]
    # 02:30 that happens twice runs once.
    assert cron.after(at("2026-10-24T12:00:00+02:00"), 2) == [
        at("2026-10-25T02:30:00+02:00"), at("2026-10-26T02:30:00+01:00"),
    ]


ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("when", ["30 2 * * *", "*/15 * * * *", "15 1-3 * * *", "0 0 * * 0"])
@pytest.mark.parametrize("start", ["2026-03-07", "2026-03-27", "2026-10-23", "2026-10-31"])
def test_ticks_agree_forwards_and_backwards(zone: str, when: str, start: str) -> None:
    """Every maker finds the due tick walking back from its now; the listed next ticks walk
    forward: across daylight-saving changes they must be the same instants."""
    cron = Cron.parse(when, zone)
    forward = cron.after(at(f"{start}T00:00:00+00:00"), 150)
    assert list(reversed(cron.at_or_before(forward[-1], 150))) == forward
