"""The fault suite's own judge: a paused agent's stale hold run is told apart from a later,
legitimate attempt of the same task on the same agent (a false alarm a CI run raised); a run
that went on after its agent was SIGKILLed is caught; the report counts what the processes
logged."""

from __future__ import annotations

from pathlib import Path

from conveyor.server.store.records import TaskRecord
from conveyor.tasks import TaskStatus
from tests.faults.verify import Report, check, logged_errors
from tests.faults.workload import Accepted, Planned, Run

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


def test_a_run_going_on_after_its_agent_was_sigkilled_is_counted_twice() -> None:
    # agent-b#1 was SIGKILLed at 100 s; its worker ran the hold on to 125 s, while attempt 2
    # (the stored one) ran elsewhere once the lease had lapsed.
    row = TaskRecord(
        "task-1", "ws", "stub", TaskStatus.COMPLETE, "{}", None, 2, 2, 5, -1, 3600, 0, "c",
        0, 0, 0, 0, '{"token": "tok2", "attempt": 2}', None,
    )  # fmt: skip
    orphan = Run("task-1", 1, 41, "agent-b#1", 95.0, 125.0, "tok1", "hold")
    retry = Run("task-1", 2, 42, "agent-a#1", 112.0, 112.1, "tok2", "hold")
    report = check(
        Report("t", 1),
        [Planned("k", "hold", False)],
        Accepted(ids={"k": "task-1"}),
        {"task-1": row},
        [orphan, retry],
        {},
        {},
        deaths={"agent-b#1": 100.0},
    )
    assert report.ran_after_death == 1
    assert "task task-1: attempt 1 ran on 25.0 s after its agent agent-b#1 was SIGKILLed" in (
        report.violations
    )
    assert report.overlaps_outside_stall == 1
    assert "concurrent runs outside a pause or cut: 1" in report.text()
    assert "runs ending after their agent's death: 1" in report.text()
    # A run that ended as its agent was killed is no violation.
    report = check(
        Report("t", 1),
        [Planned("k", "hold", False)],
        Accepted(ids={"k": "task-1"}),
        {"task-1": row},
        [Run("task-1", 1, 41, "agent-b#1", 95.0, 100.5, "tok1", "hold"), retry],
        {},
        {},
        deaths={"agent-b#1": 100.0},
    )
    assert (report.ran_after_death, report.overlaps_outside_stall, report.violations) == (0, 0, [])
