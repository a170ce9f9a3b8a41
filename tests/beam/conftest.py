"""Beam's own published clients, installed from their registries, run unchanged against a real
``conveyor serve`` (DESIGN A12): the Python ``beta9`` client in a virtual environment of its
own, ``@beamcloud/beam-js`` under node.

Both are installed once into ``.cache/beam-clients/`` (git ignores it) and reused by later
runs. Without node or npm, or when an install fails, the tests are skipped locally and fail
when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Server, clean_env, run_cli, start_server, stop_process
from tests.sandboxing import in_ci

BETA9 = "beta9==0.1.291"
BEAM_JS = "@beamcloud/beam-js@1.0.17"
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "beam-clients"
INSTALL_WITHIN_S = 600
RUN_WITHIN_S = 90

#: Beside the CLI tests' handlers (fast, slow, failing) and docs/api.md's ``square``
#: (examples/app.py): bytes with an output.
EXTRA_HANDLERS = '''
    from conveyor import Output, task_queue


    @task_queue(name="blob", keep_warm_seconds=60)
    def blob(text: str = "") -> bytes:
        Output.from_bytes("echo.txt", text.encode()).save()
        return text.encode()
'''
SERVED = ("handlers.py:fast", "handlers.py:slow", "handlers.py:failing", "beam_handlers.py:blob",
          "app.py:square")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "app.py"


def unavailable(message: str) -> None:
    """Skip the calling test, or fail it in CI."""
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _install(final: Path, steps: list[list[str]], marker: str) -> Path:
    """``final``, installed by ``steps`` (``{dir}`` in them: where) unless a finished install
    is there. They run in a twin folder moved into place at the end, so a folder half
    installed is never taken for a finished one."""
    if (final / marker).exists():
        return final
    building = final.with_name(f"{final.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    building.parent.mkdir(parents=True, exist_ok=True)
    for step in steps:
        command = [part.replace("{dir}", str(building)) for part in step]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=INSTALL_WITHIN_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            unavailable(f"{' '.join(command)} failed: {exc}")
        if result.returncode != 0:
            unavailable(f"{' '.join(command)} failed:\n{result.stdout}{result.stderr}")
    (building / marker).touch()
    shutil.rmtree(final, ignore_errors=True)
    building.rename(final)
    return final


@pytest.fixture(scope="session")
def beta9_python() -> Path:
    """The interpreter of a virtual environment holding ``beta9`` and nothing of conveyor's."""
    venv = _install(CACHE / "venv-beta9", [
        [sys.executable, "-m", "venv", "{dir}"],
        ["{dir}/bin/python", "-m", "pip", "install", "-q", BETA9],
    ], BETA9)
    return venv / "bin" / "python"


@pytest.fixture(scope="session")
def beam_js() -> Path:
    """The ``node_modules`` folder holding ``@beamcloud/beam-js``."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed to run beam-js (Debian: apt-get install nodejs npm)")
    prefix = _install(CACHE / "node", [["npm", "install", "--prefix", "{dir}", BEAM_JS]],
                      BEAM_JS.replace("/", "_"))
    return prefix / "node_modules"


@dataclass
class Gateway:
    """A ``conveyor serve`` with its owner's token, a token of another workspace, the owner's
    workspace id and the stub id of each queue version."""

    server: Server
    stranger: str
    workspace_id: str
    stubs: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def token(self) -> str:
        return self.server.token

    def put(self, queue: str, body: dict[str, Any] | None = None) -> str:
        return self.server.put(queue, body)

    def task(self, task_id: str) -> dict[str, Any]:
        return self.server.task(task_id)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("beam")
    (folder / "beam_handlers.py").write_text(textwrap.dedent(EXTRA_HANDLERS))
    shutil.copy(EXAMPLES, folder / "app.py")
    server = start_server(folder, SERVED)
    try:
        deployed = server.cli("deploy", "handlers.py:fast")  # fast v2, a deployed version
        assert deployed.returncode == 0, deployed.stderr
        made = run_cli(folder, "token", "create", "--workspace", "stranger", "--store",
                       server.store_url)
        assert made.returncode == 0, made.stderr
        with server.http() as http:
            workspace = http.get("/api/v1/workspace/current").raise_for_status().json()
        yield Gateway(server, made.stdout.strip().splitlines()[-1], workspace["external_id"],
                      _stub_ids(server))
    finally:
        stop_process(server.process)


def _stub_ids(server: Server) -> dict[str, str]:
    """``{"fast": <v1, served>, "fast v2": <deployed>, "slow": …}``."""
    with server.http() as http:
        queues = http.get("/v2/taskqueue/").raise_for_status().json()["data"]
    stubs = {}
    for queue in queues:
        for version in queue["versions"]:
            key = queue["name"] if version["version"] == 1 else f"{queue['name']} v2"
            stubs[key] = version["stub_id"]
    return stubs


def run_script(command: list[str], folder: Path, env: dict[str, str]) -> str:
    """What a client's script printed; it must succeed."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_WITHIN_S,
                            env=clean_env(folder, **env), cwd=folder)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    return result.stdout


def python_client(python: Path, gateway: Gateway, script: str, **env: str) -> Any:
    """``script`` run by the beta9 environment's interpreter, with ``URL`` and ``TOKEN`` (the
    owner's unless ``env`` says) set; it prints one JSON value last, which is returned."""
    printed = run_script([str(python), "-c", textwrap.dedent(script)], gateway.server.folder,
                         {"URL": gateway.url, "TOKEN": gateway.token, **env})
    return json.loads(printed.strip().splitlines()[-1])


def node_client(modules: Path, gateway: Gateway, script: str, **env: str) -> Any:
    """``script``'s body run under node inside an async function, with ``URL`` and ``TOKEN``
    set and beam-js on ``NODE_PATH``; ``out(value)`` prints the value returned."""
    program = (
        "const out = (value) => console.log(JSON.stringify(value));\n"
        f"(async () => {{\n{textwrap.dedent(script)}\n}})()"
        ".catch((error) => { console.error(error); process.exit(1); });\n"
    )
    printed = run_script(["node", "-e", program], gateway.server.folder,
                         {"NODE_PATH": str(modules), "URL": gateway.url, "TOKEN": gateway.token,
                          **env})
    return json.loads(printed.strip().splitlines()[-1])

