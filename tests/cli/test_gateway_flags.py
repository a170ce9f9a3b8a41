"""Every gateway setting is a flag and a ``CONVEYOR_*`` variable of ``conveyor serve`` and
``conveyor server``; bad values are one ``error:`` line."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
import typer
from typer.testing import CliRunner

from conveyor.cli.app import app
from conveyor.queue_config import QueueConfig
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.store import open_store
from conveyor.server.store.base import Store
from conveyor.server.store.records import TaskFilter
from tests.cli.conftest import HANDLERS, clean_env, one_error_line
from tests.gateway.conftest import code_bundle, finish, start
from tests.gateway_process import GatewayProcess, start_gateway

PUBLIC = "https://q.example"
LIMIT = 1000
TOO_BIG = orjson.dumps({"x": "a" * 2000})


def test_every_setting_has_a_flag_and_a_variable_on_both_commands() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    for name in ("serve", "server"):
        options = {
            opt: param.envvar
            for param in commands[name].params
            for opt in getattr(param, "opts", ())
        }
        for field in dataclasses.fields(GatewaySettings):
            flag = "--" + field.name.replace("_", "-")
            assert options.get(flag) == f"CONVEYOR_{field.name.upper()}", (name, flag)


def test_signing_key_commands_have_examples() -> None:
    for command in (["signing-key"], ["signing-key", "rotate"]):
        result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
        assert result.exit_code == 0 and "Example" in result.output, result.output


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path}/conveyor.db")
    await opened.open()
    yield opened
    await opened.close()


def _deploy(gateway: GatewayProcess, token: str) -> dict[str, str]:
    config = QueueConfig(name="thumbs", handler="app.py:handler").to_json()
    files = {"config": (None, config), "code": ("bundle.zip", code_bundle(), "application/zip")}
    response = httpx.post(
        f"{gateway.url}/v2/deployment/", files=files,
        headers={"Authorization": f"Bearer {token}"}, timeout=10,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, str] = response.json()
    return answer


def _enqueue(gateway: GatewayProcess, token: str, body: bytes) -> int:
    response = httpx.post(
        f"{gateway.url}/taskqueue/thumbs", content=body,
        headers={"Authorization": f"Bearer {token}"}, timeout=10,
    )
    return response.status_code


async def test_server_flags_set_public_url_and_body_limit(store: Store, tmp_path: Path) -> None:
    workspace = await store.ensure_workspace("acme")
    token = await store.create_token(workspace.id)
    gateway = start_gateway(
        tmp_path / "gw", f"sqlite:///{tmp_path}/conveyor.db",
        "--public-url", PUBLIC + "/", "--max-body-bytes", str(LIMIT),
    )
    try:
        assert _deploy(gateway, token)["url"] == f"{PUBLIC}/taskqueue/thumbs/v1"
        assert _enqueue(gateway, token, TOO_BIG) == 413
        assert _enqueue(gateway, token, b"{}") == 200
        stub = await store.resolve_stub(workspace.id, "thumbs")
        assert stub is not None
        await finish(store, await start(store, stub), outputs=[("out.txt", b"x")])
        [view], _ = await store.list_tasks(workspace.id, TaskFilter())
        [output] = gateway.task(view.task.id, token)["outputs"]
        assert output["url"].startswith(f"{PUBLIC}/v2/output/"), output
    finally:
        assert gateway.stop() == 0, gateway.log()


def test_serve_reads_the_variables(tmp_path: Path) -> None:
    folder = tmp_path / "serve"
    folder.mkdir()
    (folder / "handlers.py").write_text(textwrap.dedent(HANDLERS))
    gateway = start_gateway(
        folder, f"sqlite:///{folder}/.conveyor/conveyor.db", "handlers.py:fast",
        command=("serve",),
        env={"CONVEYOR_PUBLIC_URL": PUBLIC, "CONVEYOR_MAX_BODY_BYTES": str(LIMIT)},
    )
    try:
        token = (folder / ".conveyor" / "token").read_text().strip()
        assert _deploy(gateway, token)["url"] == f"{PUBLIC}/taskqueue/thumbs/v1"
        assert _enqueue(gateway, token, TOO_BIG) == 413
    finally:
        assert gateway.stop() == 0, gateway.log()


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["server", "--max-body-bytes", "0"], {}, "--max-body-bytes"),
        (["server", "--public-url", "ftp://q.example"], {}, "--public-url"),
        (["server", "--public-url", "https://q.example/?a=1"], {}, "--public-url"),
        (["serve", "x.py:f"], {"CONVEYOR_OUTPUT_URL_TTL_S": "soon"}, "CONVEYOR_OUTPUT_URL_TTL_S"),
        (["serve", "x.py:f", "--sse-ping-s", "0"], {}, "--sse-ping-s"),
    ],
)
def test_bad_values_are_one_error_line(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor", *args], capture_output=True, text=True,
        env=clean_env(tmp_path, **env), cwd=tmp_path, timeout=60,
    )
    assert result.returncode == 2
    line = one_error_line(result)
    assert "Invalid value for" in line and named in line, line  # not "No such option"
