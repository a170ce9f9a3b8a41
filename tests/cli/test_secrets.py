"""``conveyor secret`` against a real ``conveyor serve`` (DESIGN A9): create (from stdin),
list, update, delete, each failure one ``error:`` line; the value in no output, no log line of
``serve`` and not in the store's files; the key file beside the store, 0600 and hidden from
handlers; ``keygen`` and ``rotate-key``. ``server`` and ``worker`` on PostgreSQL refuse to
start without the key once a secret exists."""

from __future__ import annotations

import asyncio
import hashlib
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography.fernet import Fernet

from conveyor.server.secret_key import KEY_FILE, SecretKey, new_key
from conveyor.server.store import open_store
from conveyor.tasks import TaskStatus
from tests.cli.conftest import (
    Server,
    clean_env,
    one_error_line,
    run_cli,
    start_server,
    stop_process,
)
from tests.hostile.test_secret_redaction import raw_store
from tests.sandboxing import require_sandbox

VALUE = "cli-s3cr3t-4a7f0d2c"
UPDATED = "cli-upd4ted-91be66"

SECRET_HANDLERS = '''
    import hashlib, os

    from conveyor import task_queue


    def read(path):
        try:
            with open(path) as f:
                return f.read()
        except OSError as exc:
            return type(exc).__name__


    @task_queue(name="uses", secrets=["API_TOKEN"], keep_warm_seconds=0)
    def uses(paths: list = []) -> dict:
        return {"sha": hashlib.sha256(os.environ["API_TOKEN"].encode()).hexdigest(),
                "read": [read(path) for path in paths]}
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("secrets")
    (folder / "secret_handlers.py").write_text(textwrap.dedent(SECRET_HANDLERS))
    running = start_server(folder, ["secret_handlers.py:uses"])
    yield running
    assert stop_process(running.process) == 0, running.log()


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _run(served: Server, body: dict[str, object] | None = None) -> dict[str, object]:
    task_id = served.put("uses", body)
    assert served.wait_status(task_id, {TaskStatus.COMPLETE}) == "COMPLETE", served.task(task_id)
    result: dict[str, object] = served.task(task_id)["result"]
    return result


def _key_file(served: Server) -> Path:
    return served.folder / ".conveyor" / KEY_FILE


def test_create_list_update_delete_and_the_value_shown_nowhere(served: Server) -> None:
    outputs = []
    made = served.cli("secret", "create", "API_TOKEN", "-", stdin=VALUE + "\n")
    assert made.returncode == 0 and made.stdout.strip() == "secret API_TOKEN created", made
    outputs.append(made)
    assert _run(served)["sha"] == _sha(VALUE)  # the final newline of stdin is not the value's

    listed = served.cli("secret", "list")
    assert listed.returncode == 0 and "API_TOKEN" in listed.stdout
    as_json = served.cli("secret", "list", "--format", "json")
    [item] = orjson.loads(as_json.stdout)
    assert set(item) == {"name", "created_at", "updated_at"} and item["name"] == "API_TOKEN"
    updated = served.cli("secret", "create", "API_TOKEN", UPDATED)
    assert updated.stdout.strip() == "secret API_TOKEN updated"
    outputs += [listed, as_json, updated]
    assert _run(served)["sha"] == _sha(UPDATED)  # the first container retired (keep_warm 0)

    gone = served.cli("secret", "delete", "API_TOKEN")
    assert gone.returncode == 0 and gone.stdout.strip() == "secret API_TOKEN deleted"
    assert "404" in one_error_line(served.cli("secret", "delete", "API_TOKEN"))
    assert "upper-case" in one_error_line(served.cli("secret", "create", "api-token", VALUE))
    outputs += [gone, served.cli("secret", "list")]
    assert "no secrets" in outputs[-1].stdout

    key_file = _key_file(served)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    raw = raw_store(served.store_url)
    for value in (VALUE, UPDATED):
        for result in outputs:
            assert value not in result.stdout + result.stderr
        assert value not in served.log()
        assert value.encode() not in raw
        assert value not in key_file.read_text()


def test_the_key_file_is_hidden_from_handlers(served: Server) -> None:
    require_sandbox()
    served.cli("secret", "create", "API_TOKEN", "-", stdin=VALUE)
    key_file = _key_file(served)
    assert key_file.read_text().strip()
    beside = key_file.with_name("beside.txt")  # as private, in the same (bound) folder
    beside.write_text("readable")
    beside.chmod(0o600)
    # The key file's place holds /dev/null on a nodev mount: it cannot even be opened.
    paths = [str(beside), str(key_file)]
    assert _run(served, {"paths": paths})["read"] == ["readable", "PermissionError"]


def test_keygen_prints_a_fernet_key(tmp_path: Path) -> None:
    made = run_cli(tmp_path, "secret", "keygen")
    assert made.returncode == 0
    Fernet(made.stdout.strip())  # raises if it is not a key


def test_rotate_key_beside_a_running_serve(served: Server) -> None:
    served.cli("secret", "create", "API_TOKEN", "-", stdin=VALUE)
    before = _key_file(served).read_text()
    rotated = served.cli("secret", "rotate-key", "--store", served.store_url)
    assert rotated.returncode == 0, rotated.stderr
    assert "encrypted again with the new key" in rotated.stdout
    after = _key_file(served).read_text().split()
    assert len(after) == 1 and after[0] not in before
    assert _run(served)["sha"] == _sha(VALUE)  # a container started since reads it


# -- PostgreSQL: the key comes from CONVEYOR_SECRET_KEY -------------------------------------


async def _with_secret(pg_url: str, key: SecretKey) -> None:
    store = open_store(pg_url)
    await store.open()
    try:
        workspace = await store.ensure_workspace("default")
        await store.put_secret(workspace.id, "API_TOKEN", key.encrypt(VALUE))
    finally:
        await store.close()


def _conveyor(tmp_path: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conveyor", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=clean_env(tmp_path, **env), cwd=tmp_path,
    )


@pytest.mark.parametrize("command", ["server", "worker"])
def test_without_the_key_server_and_worker_refuse_to_start(
    tmp_path: Path, pg_url: str, command: str
) -> None:
    key = new_key()
    asyncio.run(_with_secret(pg_url, SecretKey(keys=key)))
    args = [command, "--store", pg_url, *(["--port", "1"] if command == "server" else [])]
    for env, says in [({}, "the store holds secrets and CONVEYOR_SECRET_KEY is not set"),
                      ({"CONVEYOR_SECRET_KEY": key[:-3]}, "does not hold Fernet keys")]:
        process = _conveyor(tmp_path, *args, **env)
        out, err = process.communicate(timeout=60)
        result = subprocess.CompletedProcess(process.args, process.returncode, out, err)
        assert says in one_error_line(result)
        assert key not in out + err


def test_with_the_key_a_worker_runs_and_rotate_key_moves_to_a_new_one(
    tmp_path: Path, pg_url: str
) -> None:
    old, new = new_key(), new_key()
    asyncio.run(_with_secret(pg_url, SecretKey(keys=old)))
    worker = _conveyor(tmp_path, "worker", "--store", pg_url, "--no-sandbox",
                       CONVEYOR_SECRET_KEY=old)
    time.sleep(2)
    assert worker.poll() is None, worker.communicate()
    assert stop_process(worker) == 0

    alone = run_cli(tmp_path, "secret", "rotate-key", "--store", pg_url,
                    env=clean_env(tmp_path, CONVEYOR_SECRET_KEY=new))
    assert "NEW,OLD" in one_error_line(alone)
    rotated = run_cli(tmp_path, "secret", "rotate-key", "--store", pg_url,
                      env=clean_env(tmp_path, CONVEYOR_SECRET_KEY=f"{new},{old}"))
    assert rotated.returncode == 0 and rotated.stdout.startswith("1 secret(s)"), rotated.stderr

    async def stored() -> str:
        store = open_store(pg_url)
        await store.open()
        try:
            found = await store.any_secret()
            assert found is not None
            return found[1]
        finally:
            await store.close()

    assert SecretKey(keys=new).decrypt("API_TOKEN", asyncio.run(stored())) == VALUE
