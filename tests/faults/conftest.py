"""Fault-suite fixtures: the seed, the private PostgreSQL cluster, the network namespace, and
the report printed in pytest's terminal summary (also appended to ``$FAULT_REPORT_FILE``)."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.cluster import Netns, PrivatePostgres, can_make_cluster

REPORTS: list[str] = []


def _skip_or_fail(message: str) -> None:
    """Skip outside CI; in CI (``CI=true``) a missing capability is a failure."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def task_count(default: int) -> int:
    """``FAULT_TASKS`` sets the load (e.g. 5000 for the full size); else ``default``."""
    return int(os.environ.get("FAULT_TASKS", default))


@pytest.fixture
def seed() -> int:
    """``FAULT_SEED`` fixes the chaos schedule and the task mix; printed for replay."""
    value = int(os.environ.get("FAULT_SEED") or random.SystemRandom().randrange(1, 10**6))
    print(f"fault seed: {value} (replay with FAULT_SEED={value})")
    return value


@pytest.fixture
def netns() -> Iterator[Netns]:
    try:
        ns = Netns.create()
    except (OSError, Exception) as exc:
        _skip_or_fail(f"cannot make a network namespace on this machine: {exc}")
        raise
    try:
        yield ns
    finally:
        ns.delete()


def private_pg(hosts: list[str]) -> PrivatePostgres:
    why = can_make_cluster()
    if why is not None:
        _skip_or_fail(f"cannot make a private PostgreSQL cluster: {why}")
    pg = PrivatePostgres(hosts)
    try:
        pg.start()
    except Exception:
        pg.stop()
        raise
    return pg


def publish(report: str) -> None:
    REPORTS.append(report)
    target = os.environ.get("FAULT_REPORT_FILE")
    if target:
        with Path(target).open("a") as out:
            out.write(report + "\n\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTS:
        terminalreporter.section("fault-injection reports")
        for report in REPORTS:
            terminalreporter.write_line(report)
            terminalreporter.write_line("")
