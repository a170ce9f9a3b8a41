"""The fault suite's own judge: a paused agent's stale hold run is told apart from a later,
legitimate attempt of the same task on the same agent (a false alarm a CI run raised); the
report counts what the processes logged."""

from __future__ import annotations

from pathlib import Path

from tests.faults.verify import Report, check, logged_errors
from tests.faults.workload import Accepted, Run

STALE = "task task-1: agent-a#2 came back and did not stop its stale attempt"


def judge(runs: list[Run]) -> Report:
    # Only the stale-run part is exercised: no planned tasks, no rows.
    accepted = Accepted(ids={"k": "task-1"})
    return check(
        Report("t", 1),
        [],
        accepted,
        {},
        runs,
        {"agent-a#2": [(100.0, 118.0)]},
        {},
        begins=[("task-1", "agent-a#2")],
    )


def run(attempt: int, start: float, end: float) -> Run:
    return Run("task-1", attempt, 4242, "agent-a#2", start, end, f"tok{attempt}", "hold")


def test_a_later_attempt_on_the_agent_that_came_back_is_not_the_stale_run() -> None:
    report = judge([run(2, 118.1, 118.2)])  # attempt 1 was killed; attempt 2 ran after
    assert STALE not in report.violations
    assert report.foreign_stopped == 1


def test_a_stale_hold_run_that_reached_its_end_is_a_violation() -> None:
    report = judge([run(1, 99.0, 129.0)])
    assert STALE in report.violations
    assert report.foreign_stopped == 0


def test_the_report_counts_logged_tracebacks_by_what_they_raised(tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    log.write_text(
        "2026 ERROR dispatch failed\n"
        "Traceback (most recent call last):\n"
        '  File "agent.py", line 1, in dispatch\n'
        "    raise KeyError('x')\n"
        "KeyError: 'x'\n"
        "2026 WARNING claim failed: the store cannot be reached\n"
        "Traceback (most recent call last):\n"
        '  File "agent.py", line 1, in dispatch\n'
        "KeyError: 'x'\n"
    )
    found = logged_errors([log, tmp_path / "missing.log"])
    assert found == {"KeyError: 'x'": 2}
    report = Report("t", 1, errors_logged=found)
    assert "tracebacks in the process logs: 2" in report.text()
    assert "2 × KeyError: 'x'" in report.text()
