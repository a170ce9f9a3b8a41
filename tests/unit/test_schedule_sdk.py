"""``@schedule``: what it checks at decoration, the config it makes, and ``FILE:FUNC`` of one."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from conveyor import Schedule, TaskContext, schedule, task_queue
from conveyor.errors import ConfigError
from conveyor.sdk.loader import load_target


def test_a_schedule_is_a_task_queue_with_a_clock() -> None:
    @schedule(when="*/5 * * * *", timezone="Europe/Paris", timeout=60, max_retries=1)
    def sync(context: TaskContext | None = None) -> str:
        return "synced" if context is not None else "here"

    assert isinstance(sync, Schedule) and sync.name == "sync"
    assert (sync.when, sync.timezone) == ("*/5 * * * *", "Europe/Paris")
    config = sync.config("app.py:sync").to_dict()
    assert config["when"] == "*/5 * * * *" and config["timezone"] == "Europe/Paris"
    assert config["timeout"] == 60 and config["max_retries"] == 1
    after = datetime(2026, 11, 28, 10, 2, tzinfo=UTC)
    assert sync.next_times(3, after) == [
        datetime(2026, 11, 28, 11, 5, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(2026, 11, 28, 11, 10, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(2026, 11, 28, 11, 15, tzinfo=ZoneInfo("Europe/Paris")),
    ]
    assert sync.local() == "synced"  # .local() hands it a context, as a container would


def test_async_and_named_schedules() -> None:
    @schedule(when="@daily", name="nightly-report")
    async def report() -> int:
        return 7

    assert report.name == "nightly-report" and report.timezone == "UTC"
    assert report.local() == 7


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"when": "nope"}, "^when"),
        ({"when": "* * * * *", "timezone": "Nowhere/Land"}, "^timezone"),
    ],
)
def test_when_and_timezone_are_checked_at_the_decorator(
    options: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        schedule(**options)  # type: ignore[arg-type]


def test_the_function_takes_no_arguments_and_other_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="needs user"):
        @schedule(when="@hourly")
        def remind(user: int) -> None: ...

    @schedule(when="@hourly")
    def with_defaults(limit: int = 10, *args: int, **kwargs: int) -> int:
        return limit

    assert with_defaults.local() == 10
    with pytest.raises(ConfigError, match=r"^ttl"):
        @schedule(when="@hourly", ttl=0)
        def short() -> None: ...

    with pytest.raises(TypeError, match="unexpected keyword argument 'every'"):
        schedule(when="@hourly", every=5)  # type: ignore[call-arg]

    @task_queue
    def queue() -> None: ...

    with pytest.raises(ConfigError, match="already"):
        schedule(when="@hourly")(queue)


def test_file_func_finds_a_schedule(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent('''
        from conveyor import schedule

        @schedule(when="0 9 * * MON")
        def weekly() -> None: ...

        def plain() -> None: ...
    '''))
    target = load_target(f"{path}:weekly")
    assert isinstance(target.queue, Schedule)
    assert target.config(code_path=None).when == "0 9 * * MON"
    with pytest.raises(ConfigError, match=r"@task_queue or @schedule.*app\.py:weekly"):
        load_target(f"{path}:plain")
