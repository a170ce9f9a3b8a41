"""``conveyor deploy``: the bundle honours ``.conveyorignore``, and a ``conveyor worker`` on the
same store runs the new version."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Server, clean_env, one_error_line, stop_process
from tests.sandboxing import sandbox_flags

PROBE = '''
    import os

    from conveyor import task_queue

    HERE = os.path.dirname(os.path.abspath(__file__))


    @task_queue(name="probe", keep_warm_seconds=60)
    def probe(paths: list) -> dict:
        """Which of these paths exist in the unpacked bundle."""
        return {path: os.path.exists(os.path.join(HERE, path)) for path in paths}
'''
PATHS = ["app.py", "helper.py", "data/keep.txt", "secret.txt", "data/drop.log", "build/x.txt",
         ".git/config", "__pycache__/app.cpython-311.pyc"]
SHIPPED = {"app.py", "helper.py", "data/keep.txt"}


def make_project(folder: Path) -> Path:
    for path in PATHS:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text("x = 1\n")
    (folder / "app.py").write_text(textwrap.dedent(PROBE))
    (folder / ".conveyorignore").write_text("# not shipped\nsecret.txt\n*.log\nbuild/\n")
    return folder / "app.py"


@pytest.fixture(scope="module")
def worker(server: Server) -> Iterator[subprocess.Popen[bytes]]:
    """``conveyor worker`` on the server's store, in a folder of its own (its code cache)."""
    folder = server.folder / "worker"
    folder.mkdir()
    with (folder / "worker.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "conveyor", "worker", "--store", server.store_url,
             *sandbox_flags(folder)],
            cwd=folder, env=clean_env(server.home), stdout=log, stderr=subprocess.STDOUT,
        )
    yield process
    assert stop_process(process) == 0, (folder / "worker.log").read_text()


def test_deploy_uploads_the_folder_minus_ignored_files(
    server: Server, worker: subprocess.Popen[bytes]
) -> None:
    app = make_project(server.folder / "project")
    result = server.cli("deploy", str(app.relative_to(server.folder)) + ":probe")
    assert result.returncode == 0, result.stderr
    assert "probe v1" in result.stdout
    url = f"{server.url}/taskqueue/probe/v1"
    assert url in result.stdout
    curl = next(line for line in result.stdout.splitlines() if "curl" in line)
    assert url in curl and server.token in curl

    ran = server.cli("put", "probe", json.dumps({"paths": PATHS}), "--wait", "--timeout", "60")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {path: path in SHIPPED for path in PATHS}

    again = server.cli("deploy", f"{app}:probe")
    assert again.returncode == 0, again.stderr
    assert "probe v2" in again.stdout


def test_deploy_refuses_a_handler_its_ignore_file_excludes(server: Server) -> None:
    app = make_project(server.folder / "ignored")
    (app.parent / ".conveyorignore").write_text("*.py\n")
    assert "excluded" in one_error_line(server.cli("deploy", f"{app}:probe"))


def test_deploy_of_a_missing_file_is_one_error_line(server: Server) -> None:
    assert "no such file" in one_error_line(server.cli("deploy", "nowhere.py:probe"))
