"""Two ``conveyor server`` processes on one store, behind an imagined load balancer: an output
link one of them signs downloads from the other, and keeps doing so across a key rotation made
with ``conveyor signing-key rotate`` while both keep running."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor.server.gateway.signing import LinkKeys
from conveyor.server.store.records import ServerKeys
from conveyor.tasks import TaskStatus
from tests.gateway_process import GatewayProcess, start_gateway
from tests.integration.conftest import Harness, until

REPORT = b"bytes written by the agent\n"
WRITER = f"""
    from conveyor import Output

    def handler():
        Output.from_bytes("report.txt", {REPORT!r}).save()
        return "ok"
"""


@pytest.fixture
async def gateways(store_url: str, tmp_path: Path) -> AsyncIterator[list[GatewayProcess]]:
    started = await asyncio.gather(
        *(asyncio.to_thread(start_gateway, tmp_path / name, store_url) for name in "ab")
    )
    yield list(started)
    for gateway in started:
        assert gateway.stop() == 0, gateway.log()


async def _finished_task_with_output(harness: Harness) -> tuple[str, str]:
    """A task an in-process agent ran, which saved one output file; its id and a token."""
    stub = await harness.queue("writer", WRITER)
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub), timeout=60)
    assert view.task.status is TaskStatus.COMPLETE, view.task
    return view.task.id, await harness.store.create_token(harness.workspace.id)


def _link(gateway: GatewayProcess, task_id: str, token: str) -> str:
    [output] = gateway.task(task_id, token)["outputs"]
    url: str = output["url"]
    assert url.startswith(gateway.url + "/v2/output/"), url
    return url


def _signed_with(key: str, link: str) -> bool:
    parts = urlsplit(link)
    *_, output_id, name = parts.path.split("/")
    expires = int(parse_qs(parts.query)["expires"][0])
    base = f"{parts.scheme}://{parts.netloc}"
    return LinkKeys(ServerKeys(key)).url(base, output_id, name, expires) == link


async def test_a_link_signed_by_one_gateway_downloads_from_the_other(
    harness: Harness, gateways: list[GatewayProcess]
) -> None:
    task_id, token = await _finished_task_with_output(harness)
    a, b = gateways
    for signer, other in ((a, b), (b, a)):
        link = _link(signer, task_id, token)
        response = other.get(link)  # no token: the signature alone lets it in
        assert response.status_code == 200, (response.status_code, response.text)
        assert response.content == REPORT


async def test_rotation_reaches_running_gateways_and_keeps_old_links(
    harness: Harness, gateways: list[GatewayProcess], store_url: str, tmp_path: Path
) -> None:
    task_id, token = await _finished_task_with_output(harness)
    before = _link(gateways[0], task_id, token)
    old_key = (await harness.store.server_keys()).current
    assert _signed_with(old_key, before)

    rotated = subprocess.run(
        [sys.executable, "-m", "conveyor", "signing-key", "rotate", "--store", store_url],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "new signing key" in rotated.stdout
    keys = await harness.store.server_keys()
    assert keys.previous == old_key and keys.current != old_key

    # Without a restart, each gateway signs new links with the new key within seconds ...
    for signer in gateways:

        def signs_anew(gateway: GatewayProcess = signer) -> bool:
            return _signed_with(keys.current, _link(gateway, task_id, token))

        await until(signs_anew, 30)
        after = _link(signer, task_id, token)
        assert _signed_with(keys.current, after), after
        for gateway in gateways:  # ... which every gateway accepts
            response = gateway.get(after)
            assert (response.status_code, response.content) == (200, REPORT)
    # ... and a link signed before the rotation still downloads from both.
    for gateway in gateways:
        assert gateway.get(before).status_code == 200
    assert all(gateway.process.poll() is None for gateway in gateways)
