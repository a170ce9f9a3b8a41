"""Schedules on the command line: ``serve`` and ``deploy`` print the next ticks,
``conveyor schedule list`` shows them, and a delayed ``put``."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests.cli.conftest import Server, start_server, stop_process

SCHEDULES = '''
    from conveyor import schedule


    @schedule(when="0 9 * * MON", timezone="Europe/Paris")
    def weekly() -> str:
        return "weekly"


    @schedule(when="@hourly")
    def hourly() -> str:
        return "hourly"
'''
#: ``2026-11-30 09:00 CET``
LOCAL = r"\d{4}-\d\d-\d\d \d\d:\d\d [A-Z]{3,4}"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("schedules")
    (folder / "schedules.py").write_text(textwrap.dedent(SCHEDULES))
    running = start_server(folder, ["handlers.py:fast", "schedules.py:weekly"])
    yield running
    stop_process(running.process)


def test_serve_prints_a_schedules_next_ticks(served: Server) -> None:
    log = served.log()
    assert re.search(r"schedule weekly v\d+ .* 0 9 \* \* MON \(Europe/Paris\)", log), log
    [line] = [line for line in log.splitlines() if line.strip().startswith("next")]
    times = re.findall(LOCAL, line)
    assert len(times) == 3 and all(t.endswith(("CET", "CEST")) for t in times)
    assert all(" 09:00 " in t for t in times), line
    assert "queue fast" in log and "/taskqueue/fast" in log  # the curl line is a queue's


def test_deploy_prints_the_next_ticks_and_list_shows_them(served: Server) -> None:
    deployed = served.cli("deploy", "schedules.py:hourly")
    assert deployed.returncode == 0, deployed.stderr
    assert "when  @hourly (UTC)" in deployed.stdout
    [line] = [line for line in deployed.stdout.splitlines() if line.strip().startswith("next")]
    assert len(re.findall(LOCAL, line)) == 3 and ":00 UTC" in line

    listed = served.cli("schedule", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {"weekly", "hourly"}, listed.stdout
    assert "0 9 * * MON" in rows["weekly"] and "Europe/Paris" in rows["weekly"]
    assert len(re.findall(LOCAL, rows["hourly"])) == 3

    as_json = json.loads(served.cli("schedule", "list", "--format", "json").stdout)
    assert {s["name"]: len(s["next"]) for s in as_json} == {"weekly": 3, "hourly": 3}
    assert all(s["last_tick"] is None for s in as_json)


def test_a_delayed_put_through_the_sdk(served: Server) -> None:
    script = (
        "from conveyor import Client\n"
        "task = Client.from_env().put('fast', x=3, delay=1.5)\n"
        "print(task.result(timeout=30))\n"
        "data = task.data\n"
        "print(data['run_at'] <= data['started_at'])\n"
    )
    ran = subprocess.run([sys.executable, "-c", script], env=served.env, cwd=served.folder,
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split("\n")[:2] == ["{'x': 3, 'double': 6}", "True"]
