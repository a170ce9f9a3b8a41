"""``-v`` shows each process's settings at start, one line per field, secrets masked.

The store is unreachable on purpose: the settings are shown before it is opened, and the
command then ends with its one ``error:`` line, so no process is left to stop.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import clean_env

PASSWORD, TOKEN = "hunter2", "cv_not_for_eyes"
STORE = f"postgresql://conveyor:{PASSWORD}@127.0.0.1:1/conveyor"


def _conveyor(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args, "--store", STORE], capture_output=True,
        text=True, env=clean_env(tmp_path, **env), cwd=tmp_path, timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "shown"),
    [
        (["serve", "x.py:f", "-v", "--token", TOKEN, "--max-body-bytes", "1234",
          "--retention", "12h"], {},
         ["gateway.max_body_bytes = 1234", "targets = x.py:f", "token = ***",
          "callbacks.max_attempts = 5", "agent.lease_s = 10.0", "retention_s = 43200.0"]),
        (["server", "--verbose", "--port", "8123"],
         {"CONVEYOR_PUBLIC_URL": "https://q.example", "CONVEYOR_PORT": "9000",
          "CONVEYOR_RETENTION": "30m"},
         # --port beats CONVEYOR_PORT
         ["port = 8123", "gateway.public_url = https://q.example", "callbacks.batch = 32",
          "retention_s = 1800.0"]),
        (["worker", "-v", "--log-max-lines", "500", "--retention", "0"],
         {"CONVEYOR_CPUS": "3", "CONVEYOR_LOG_MAX_BYTES": "65536", "CONVEYOR_RETENTION": "1d"},
         ["agent.cpu_capacity = 3.0", "agent.log_limits.max_lines = 500",
          "agent.log_limits.max_bytes = 65536", "retention_s = 0.0"]),
        (["serve", "x.py:f", "-v"], {},
         ["agent.log_limits.max_lines = 20000", "agent.log_limits.max_bytes = 2097152",
          "retention_s = 604800.0"]),
    ],
    ids=["serve", "server", "worker", "serve-defaults"],
)
def test_verbose_shows_the_settings_minus_secrets(
    tmp_path: Path, args: list[str], env: dict[str, str], shown: list[str]
) -> None:
    result = _conveyor(tmp_path, *args, **env)
    assert result.returncode == 1, result.stderr  # the unreachable store
    lines = result.stderr.splitlines()
    for line in ["store = postgresql://conveyor:***@127.0.0.1:1/conveyor", *shown]:
        assert f"setting {line}" in lines, result.stderr
    assert PASSWORD not in result.stdout + result.stderr
    assert TOKEN not in result.stdout + result.stderr


def test_without_verbose_no_settings_are_shown(tmp_path: Path) -> None:
    result = _conveyor(tmp_path, "worker")
    assert result.returncode == 1 and "setting " not in result.stderr, result.stderr


@pytest.mark.parametrize("value", ["7 days", "-1d", "1w", ""])
def test_a_bad_retention_is_one_error_line(tmp_path: Path, value: str) -> None:
    result = _conveyor(tmp_path, "worker", "--retention", value)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("error: Invalid value for '--retention'") and "7d, 12h" in line
