"""Tenant B's deployed code against the machine that runs it (DESIGN A13, docs/security.md).

A real ``conveyor serve`` (SQLite store, its token file, ``CONVEYOR_STORE``/``CONVEYOR_TOKEN``
in its environment) runs code deployed by two workspaces. B's handler tries every reach of
issue 14's finding and returns what it got: the agent's environment, its process, the store
file, the token file, A's unpacked code, its own code folder, anywhere outside ``/tmp``.
Every reach fails, ``/tmp`` is writable and an Output still comes back, and A's next task
still runs A's code.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli.conftest import clean_env, free_port, run_cli, stop_process
from tests.sandboxing import require_sandbox, sandbox_flags

SERVED = '''
from conveyor import task_queue

@task_queue(name="served")
def served() -> str:
    return "served"
'''
ALICE = '''
from conveyor import task_queue

@task_queue(name="alice-job")
def job() -> str:
    return "alice's own code"
'''
MALLORY = '''
import os

from conveyor import Output, task_queue

HERE = os.path.dirname(os.path.abspath(__file__))


def attempt(action):
    try:
        value = action()
    except Exception as exc:
        return "refused: " + type(exc).__name__
    return "REACHED: " + repr(value)[:300]


def write(path):
    def do():
        with open(path, "w") as out:
            out.write("mallory was here")
        return path
    return do


def create(path):
    """Make a new file, and take it away again if that worked (a failing run of this test
    must leave nothing behind in the machine's folders)."""
    def do():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.remove(path)
        return path
    return do


def read(path):
    def do():
        with open(path, "rb") as f:
            return f.read(300)
    return do


@task_queue(name="mallory-job")
def job(p: dict) -> dict:
    agent = p["agent_pid"]
    parent = open(f"/proc/{os.getppid()}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
    got = {
        "environment": {k: v for k, v in os.environ.items() if k.startswith("CONVEYOR")},
        "agent in /proc": str(agent) in os.listdir("/proc"),
        "parent is the agent": "serve" in parent or p["token"] in parent,
        "agent cmdline": attempt(read(f"/proc/{agent}/cmdline")),
        "agent environ": attempt(read(f"/proc/{agent}/environ")),
        "store file": attempt(read(p["store"])),
        "store wal": attempt(read(p["store"] + "-wal")),
        "token file": attempt(read(p["token_file"])),
        "code cache": os.listdir(p["cache"]) if os.path.isdir(p["cache"]) else [],
        "alice's code": attempt(lambda: os.listdir(p["alice_code"])),
        "alice's file": attempt(read(p["alice_code"] + "/app.py")),
        "overwrite alice": attempt(write(p["alice_code"] + "/app.py")),
        "own code": attempt(write(os.path.join(HERE, "app.py"))),
        "own cache folder": attempt(write(os.path.join(HERE, "new.py"))),
        # (the test's folder is under /tmp: the sandbox's own /tmp takes this write; the
        # test checks the file is not in the real folder)
        "test folder": attempt(write(p["folder"] + "/mallory.txt")),
        "/usr": attempt(create("/usr/mallory.txt")),
        "/etc": attempt(create("/etc/mallory.txt")),
        "home": attempt(create(os.path.expanduser("~root") + "/mallory.txt")),
        "/": attempt(create("/mallory.txt")),
    }
    with open("/tmp/out.txt", "w") as out:
        out.write("made in /tmp")
    Output("/tmp/out.txt").save()
    got["tmp"] = open("/tmp/out.txt").read()
    return got
'''


def _project(folder: Path, source: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "app.py").write_text(textwrap.dedent(source))
    return folder


class Serve:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.home = folder / "home"
        self.home.mkdir(parents=True)
        self.store = folder / ".conveyor" / "conveyor.db"
        self.store_url = f"sqlite:///{self.store}"
        self.token = "cv_the-agents-own-token-" + os.urandom(6).hex()
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        _project(folder / "served", SERVED)
        # The agent's environment holds the store and the token: no handler may see them.
        env = clean_env(self.home, CONVEYOR_STORE=self.store_url, CONVEYOR_TOKEN=self.token)
        self.log = folder / "serve.log"
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "conveyor", "serve", "served/app.py:served", "--port",
                 str(port), *sandbox_flags()],
                cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def deploy(self, project: Path, spec: str, token: str) -> None:
        env = clean_env(self.home, CONVEYOR_URL=self.url, CONVEYOR_TOKEN=token)
        done = run_cli(project, "deploy", spec, env=env)
        assert done.returncode == 0, done.stderr

    def run(self, queue: str, token: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=self.url, headers=headers, timeout=10) as http:
            response = http.post(f"/taskqueue/{queue}", json=body or {})
            assert response.status_code == 200, response.text
            task_id = response.json()["task_id"]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                task: dict[str, Any] = http.get(f"/v2/task/{task_id}/").json()
                if task["status"] in ("COMPLETE", "FAILED"):
                    return task
                time.sleep(0.1)
        raise AssertionError(f"{queue} did not finish:\n{self.log.read_text()}")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    require_sandbox()
    running = Serve(tmp_path / "machine")
    yield running
    assert stop_process(running.process) == 0, running.log.read_text()


def test_tenant_b_code_reaches_nothing_of_the_machine(serve: Serve, tmp_path: Path) -> None:
    mallory = run_cli(serve.folder, "token", "create", "--workspace", "mallory", "--store",
                      serve.store_url, env=clean_env(serve.home))
    assert mallory.returncode == 0, mallory.stderr
    mallory_token = mallory.stdout.strip().splitlines()[-1].split()[-1]
    serve.deploy(_project(tmp_path / "alice", ALICE), "app.py:job", serve.token)
    assert serve.run("alice-job", serve.token)["result"] == "alice's own code"
    cache = serve.folder / ".conveyor" / "code"
    [alice_code] = list(cache.iterdir())  # unpacked by its first task
    serve.deploy(_project(tmp_path / "mallory", MALLORY), "app.py:job", mallory_token)

    payload = {
        "agent_pid": serve.process.pid,
        "token": serve.token,
        "store": str(serve.store),
        "token_file": str(serve.folder / ".conveyor" / "token"),
        "cache": str(cache),
        "alice_code": str(alice_code),
        "folder": str(tmp_path),
    }
    task = serve.run("mallory-job", mallory_token, {"p": payload})
    assert task["status"] == "COMPLETE", task
    got = task["result"]
    assert got.pop("environment") == {}
    assert got.pop("agent in /proc") is False
    assert got.pop("parent is the agent") is False
    assert got.pop("tmp") == "made in /tmp"
    got.pop("test folder")
    # At most its own code's mount point: no other stub's code.
    assert alice_code.name not in got.pop("code cache")
    reached = {reach: said for reach, said in got.items() if not said.startswith("refused")}
    assert reached == {}, reached
    assert [output["name"] for output in task["outputs"]] == ["out.txt"]

    assert not (tmp_path / "mallory.txt").exists()
    assert (alice_code / "app.py").read_text() == textwrap.dedent(ALICE)
    assert serve.run("alice-job", serve.token)["result"] == "alice's own code"
    with httpx.Client(base_url=serve.url) as http:
        assert http.get("/readyz").json() == {"status": "ok", "sandbox": True}
