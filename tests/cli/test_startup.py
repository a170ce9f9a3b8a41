"""Start-up failures of ``serve``, ``server`` and ``worker``: one ``error:`` line that names
the cause and the fix, a non-zero exit code, and nothing else on stderr."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import free_port, one_error_line, run_cli

APP = """
    from conveyor import task_queue


    @task_queue(name="resize")
    def resize(path: str) -> str:
        return path


    @task_queue(name="crop")
    def crop(path: str) -> str:
        return path
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    return tmp_path


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def store_in(folder: Path) -> str:
    return f"sqlite:///{folder / 'conveyor.db'}"


def test_a_busy_port_is_named_with_the_option_to_change_it(folder: Path, busy_port: int) -> None:
    for command in (["serve", "app.py:resize"], ["server"]):
        result = run_cli(folder, *command, "--port", str(busy_port), "--store", store_in(folder))
        line = one_error_line(result)
        assert f"port {busy_port} is already in use" in line and "--port" in line


def test_a_port_number_out_of_range(folder: Path) -> None:
    line = one_error_line(run_cli(folder, "server", "--port", "70000", "--store", store_in(folder)))
    assert "70000" in line and "--port" in line


def test_an_unreachable_postgresql_store(folder: Path) -> None:
    closed = free_port()  # nothing listens there
    url = f"postgresql://postgres:secret@127.0.0.1:{closed}/test"
    for command in (["server", "--port", str(free_port())], ["worker"]):
        line = one_error_line(run_cli(folder, *command, "--store", url))
        assert f"port {closed} failed: Connection refused" in line, line
        assert "--store" in line
        assert "secret" not in line  # the password is not shown


@pytest.mark.parametrize(
    ("store", "named"),
    [
        ("foo://x", "unsupported store URL scheme 'foo'"),
        ("sqlite://", "sqlite:///relative/path.db"),
    ],
)
def test_a_malformed_store_url(folder: Path, store: str, named: str) -> None:
    for command in (["serve", "app.py:resize"], ["server"], ["worker"]):
        assert named in one_error_line(run_cli(folder, *command, "--store", store))


def test_a_file_that_is_not_an_sqlite_database(folder: Path) -> None:
    (folder / "notes.db").write_text("not a database\n")
    line = one_error_line(run_cli(folder, "serve", "app.py:resize", "--store", "sqlite:///notes.db"))
    assert "not a database" in line and "notes.db" in line and "--store" in line


def test_a_folder_nobody_can_write_to(folder: Path) -> None:
    """/proc/self refuses new files even to root (these tests may run as root)."""
    for store in ("sqlite:////proc/self/conveyor.db", "sqlite:////proc/no-such/conveyor.db"):
        line = one_error_line(run_cli(folder, "serve", "app.py:resize", "--store", store))
        assert store in line and "--store" in line


def test_a_missing_app_file_or_function(folder: Path) -> None:
    store = store_in(folder)
    missing_file = one_error_line(run_cli(folder, "serve", "ap.py:resize", "--store", store))
    assert f"no such file: {folder / 'ap.py'}" in missing_file and "FILE:FUNC" in missing_file
    missing_function = one_error_line(run_cli(folder, "serve", "app.py:rezise", "--store", store))
    assert "'rezise'" in missing_function
    assert "app.py:resize, app.py:crop" in missing_function  # what it could have been
