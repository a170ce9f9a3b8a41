"""A secret's value goes to its queue's processes and nowhere else (DESIGN A9), on both
backends: not in any API answer, dashboard page, log record or output of this process, and
not in the store's raw bytes (the SQLite files, a ``pg_dump``), which hold its ciphertext.

The handler proves it got the value by returning its SHA-256, so this test fails if the
secret is not injected as surely as if it leaked."""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import psycopg
import pytest

from conveyor.server.app import server_app
from conveyor.server.gateway.settings import GatewaySettings
from conveyor.server.secret_key import SecretKey, new_key
from conveyor.server.store.base import Store
from tests.gateway.conftest import BASE, Tenant
from tests.hostile.test_dashboard_session import signed_in
from tests.integration.conftest import Harness, error_of, result_of

VALUE = "pa55-w0rd-for-redaction-9f3e1c"
UPDATED = "upd4ted-pa55-w0rd-77ab21"
KEY = SecretKey(keys=new_key())

SOURCE = """
    import hashlib, os

    def handler():
        print("using the token")  # a line in the task's logs, without the value
        return hashlib.sha256(os.environ["API_TOKEN"].encode()).hexdigest()
"""


@pytest.fixture
async def keyed(store: Store) -> AsyncIterator[httpx.AsyncClient]:
    app = server_app(store, GatewaySettings(), secret_key=KEY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        yield client


def raw_store(store_url: str) -> bytes:
    """Every byte the store keeps: the SQLite files, or a dump of the PostgreSQL database."""
    if store_url.startswith("sqlite:///"):
        db = Path(store_url.removeprefix("sqlite:///"))
        files = [db.with_name(db.name + suffix) for suffix in ("", "-wal", "-shm")]
        return b"".join(f.read_bytes() for f in files if f.exists())
    if shutil.which("pg_dump"):
        return subprocess.run(["pg_dump", store_url], capture_output=True, check=True).stdout
    with psycopg.connect(store_url) as conn:  # no pg_dump here: the tables' text, one by one
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        dump = b""
        for (table,) in tables.fetchall():
            with conn.cursor().copy(f'COPY "{table}" TO STDOUT') as copy:
                dump += b"".join(bytes(block) for block in copy)
        return dump


async def test_the_value_is_nowhere_but_in_the_process(
    store: Store, store_url: str, keyed: httpx.AsyncClient, alice: Tenant, tmp_path: Path,
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = alice.auth
    answers: list[httpx.Response] = []

    async def call(method: str, path: str, **kwargs: object) -> httpx.Response:
        answer = await keyed.request(method, path, **kwargs)  # type: ignore[arg-type]
        assert answer.status_code < 500, answer.text
        answers.append(answer)
        return answer

    await call("POST", "/v2/secret/", json={"name": "API_TOKEN", "value": VALUE}, headers=auth)
    harness = Harness(store, alice.workspace, tmp_path)
    uses = await harness.queue("uses", SOURCE, secrets=("API_TOKEN",))
    lacks = await harness.queue("lacks", SOURCE, secrets=("API_TOKEN", "NOT_THERE"))
    try:
        await harness.start_agent([uses, lacks], secret_key=KEY)
        done = (await call("POST", "/taskqueue/uses", json={}, headers=auth)).json()["task_id"]
        failed = (await call("POST", "/taskqueue/lacks", json={}, headers=auth)).json()["task_id"]
        view = await harness.wait(done)
        assert result_of(view) == hashlib.sha256(VALUE.encode()).hexdigest()
        assert error_of(await harness.wait(failed))["type"] == "SecretNotFound"
        await call("POST", "/v2/secret", json={"name": "API_TOKEN", "value": UPDATED},
                   headers=auth)
    finally:
        await harness.stop_agents()

    for path in ["/v2/secret/", f"/v2/task/{done}/", f"/v2/task/{failed}",
                 f"/v2/task/{done}/subscribe", "/v2/task/", "/v2/task/?queue=uses",
                 "/v2/taskqueue/", "/v2/taskqueue/uses", "/v2/taskqueue/lacks", "/metrics"]:
        await call("GET", path, headers=auth)
    await call("GET", "/openapi.json")
    await signed_in(keyed, alice.token)
    for page in ["/dashboard/", "/dashboard/queues/rows", "/dashboard/tasks",
                 f"/dashboard/tasks/{done}", f"/dashboard/tasks/{done}/detail",
                 f"/dashboard/tasks/{failed}/detail"]:
        assert (await call("GET", page)).status_code == 200, page
    assert "API_TOKEN" in (await keyed.get(f"/v2/task/{done}/", headers=auth)).text

    ciphertext = (await store.secret_ciphertexts(alice.workspace.id, ["API_TOKEN"]))["API_TOKEN"]
    raw = raw_store(store_url)
    assert ciphertext.encode() in raw  # the bytes searched hold the secret's row
    printed = capfd.readouterr()
    logged = caplog.text + "".join(str(vars(record)) for record in caplog.records)
    assert any("container" in record.getMessage() for record in caplog.records)
    for value in (VALUE, UPDATED):
        for answer in answers:
            assert value not in answer.text, f"{answer.request.url} shows the secret"
            assert value not in str(answer.headers)
        assert value not in logged
        assert value not in printed.out + printed.err
        assert value.encode() not in raw
