"""An agent that cannot sandbox its worker processes does not start, in one ``error:`` line
naming ``--no-sandbox``; with ``--no-sandbox`` it says so at start and in ``/readyz``
(DESIGN A13). ``--sandbox-bind`` gives handlers a folder they may write."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

from tests.cli.conftest import clean_env, free_port, home_of, one_error_line, run_cli, stop_process
from tests.sandboxing import require_sandbox

APP = """
    from conveyor import task_queue


    @task_queue(name="note")
    def note(path: str) -> str:
        with open(path, "w") as out:
            out.write("written by a handler")
        return path
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "no-bwrap").mkdir()
    return tmp_path


def _without_bwrap(folder: Path) -> dict[str, str]:
    """No bubblewrap on PATH (the Python is found by its absolute path)."""
    return clean_env(home_of(folder), PATH=str(folder / "no-bwrap"))


@pytest.mark.parametrize("command", [["serve", "app.py:note", "--port", "0"], ["worker"]])
def test_an_agent_that_cannot_sandbox_refuses_to_start(folder: Path, command: list[str]) -> None:
    store = f"sqlite:///{folder / 'conveyor.db'}"
    line = one_error_line(run_cli(folder, *command, "--store", store, env=_without_bwrap(folder)))
    assert "cannot sandbox worker processes" in line and "--no-sandbox" in line, line
    assert "bwrap" in line


def _serve(folder: Path, *flags: str, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "serve", "app.py:note", "--port", str(port),
         "--store", f"sqlite:///{folder / 'conveyor.db'}", *flags],
        cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    stop_process(process)
    raise AssertionError(f"serve did not start: {process.communicate()}")


def _put(url: str, folder: Path, path: Path) -> dict[str, object]:
    token = (folder / "token").read_text().strip()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
        task_id = http.post("/taskqueue/note", json={"path": str(path)}).json()["task_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            task: dict[str, object] = http.get(f"/v2/task/{task_id}/").json()
            if task["status"] in ("COMPLETE", "FAILED"):
                return task
            time.sleep(0.1)
    raise AssertionError("the task did not finish")


def test_no_sandbox_warns_and_readyz_says_so(folder: Path) -> None:
    process, url = _serve(folder, "--no-sandbox", env=_without_bwrap(folder))
    try:
        assert httpx.get(f"{url}/readyz").json() == {"status": "ok", "sandbox": False}
        task = _put(url, folder, folder / "note.txt")  # one trust domain: anywhere it may
        assert task["status"] == "COMPLETE", task
    finally:
        stop_process(process)
    _, stderr = process.communicate()
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "--no-sandbox" in warnings[0], stderr


def test_a_handler_writes_only_where_the_operator_binds(folder: Path) -> None:
    require_sandbox()
    shared = folder / "shared"
    shared.mkdir()
    env = clean_env(home_of(folder))
    process, url = _serve(folder, "--sandbox-bind", str(shared), env=env)
    try:
        assert httpx.get(f"{url}/readyz").json() == {"status": "ok", "sandbox": True}
        assert _put(url, folder, shared / "note.txt")["status"] == "COMPLETE"
        assert (shared / "note.txt").read_text() == "written by a handler"
        own_folder = _put(url, folder, folder / "note.txt")  # served: its code's folder
        assert own_folder["status"] == "FAILED", own_folder
        assert "Read-only file system" in str(own_folder["error"])
        assert not (folder / "note.txt").exists()
    finally:
        stop_process(process)
    _, stderr = process.communicate()
    assert "warning" not in stderr, stderr
