"""Every command explains itself with an example; every failure is one ``error:`` line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from conveyor.cli.app import app
from tests.cli.conftest import Server, clean_env, one_error_line, start_server, stop_process

COMMANDS = [
    [], ["serve"], ["server"], ["worker"], ["deploy"], ["put"], ["task"], ["task", "list"],
    ["task", "get"], ["task", "stop"], ["task", "wait"], ["queue"], ["queue", "list"],
    ["workspace"], ["workspace", "create"], ["token"], ["token", "create"],
]


def test_every_help_has_an_example(tmp_path: Path) -> None:
    """Help is static, so all but the top-level one are checked in process (fast)."""
    top = subprocess.run(
        [sys.executable, "-m", "conveyor", "--help"], env=clean_env(tmp_path),
        capture_output=True, text=True, timeout=60,
    )
    assert top.returncode == 0 and "Example" in top.stdout, top.stderr
    runner = CliRunner()
    for command in COMMANDS:
        result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0, (command, result.output)
        assert "Example" in result.output and "Usage" in result.output, (command, result.output)


def test_client_options_are_documented(server: Server) -> None:
    shown = server.cli("task", "list", "--help").stdout
    for text in ("--url", "CONVEYOR_URL", "--token", "CONVEYOR_TOKEN", "--status", "--queue",
                 "--limit", "--format"):
        assert text in shown


def test_wrong_token_is_one_error_line(server: Server) -> None:
    for command in (["task", "list"], ["queue", "list"], ["put", "fast"]):
        line = one_error_line(server.cli(*command, "--token", "cv_wrong"))
        assert "401" in line


def test_token_and_url_from_the_config_file(server: Server) -> None:
    home = server.folder / "other-home"
    (home / ".conveyor").mkdir(parents=True)
    env = clean_env(home)
    assert "no token" in one_error_line(server.cli("queue", "list", env=env))
    (home / ".conveyor" / "config.toml").write_text(
        f'url = "{server.url}"\ntoken = "{server.token}"\n'
    )
    listed = server.cli("queue", "list", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "fast" in listed.stdout
    # An option wins over the file.
    assert "401" in one_error_line(server.cli("queue", "list", "--token", "x", env=env))


def test_a_stopped_server_is_one_error_line(tmp_path: Path) -> None:
    stopped = start_server(tmp_path / "short-lived", ["handlers.py:fast"])
    assert stop_process(stopped.process) == 0, stopped.log()
    for command in (["put", "fast", "--wait"], ["task", "list"]):
        line = one_error_line(stopped.cli(*command))
        assert "cannot reach" in line and stopped.url in line



def test_a_url_without_scheme_is_http(server: Server) -> None:
    bare = f"localhost:{server.port}"
    from_env = server.cli("queue", "list", "--format", "json",
                          env={**server.env, "CONVEYOR_URL": bare})
    from_option = server.cli("queue", "list", "--format", "json", "--url", bare)
    for result in (from_env, from_option):
        assert result.returncode == 0, result.stderr
        assert "fast" in result.stdout
