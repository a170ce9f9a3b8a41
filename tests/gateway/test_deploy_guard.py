"""DESIGN A13: deploy refuses, with a 400 naming the field, any config outside A3's types and
bounds and any bundle the agent would refuse; what it accepts an agent can always serve."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conveyor.server.agent.agent import Agent
from conveyor.server.agent.settings import AgentSettings
from conveyor.server.store.base import Store
from tests.gateway.conftest import Tenant, code_bundle

GOOD = {"name": "thumbs", "handler": "app.py:handler"}


async def post(
    http: httpx.AsyncClient, tenant: Tenant, config: Any, code: bytes | None = None
) -> httpx.Response:
    # json, not orjson: it writes integers past 64 bits and NaN, as a hostile client may.
    text = config if isinstance(config, str) else json.dumps(config)
    files = {"config": (None, text), "code": ("b.zip", code or code_bundle(), "application/zip")}
    return await http.post("/v2/deployment/", files=files, headers=tenant.auth)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("handler", 5),
        ("retry_for", [1, 2]),
        ("authorized", "no"),
        ("env", "abc"),
        ("memory", 1e308),
        ("autoscaler", "x"),
        ("retry_backoff", 1e300),
        ("max_pending_tasks", 10**7),
        ("workers", True),
        ("code_path", "/etc"),
        ("secrets", ["s3_key"]),
        ("image", {"python_packages": "six"}),
        ("image", {"python_version": "py3"}),
        ("image", {"requirements": "../etc/passwd"}),
        ("image", {"pip": []}),
        ("when", "61 * * * *"),
        ("when", 5),
        ("timezone", "Mars/Olympus"),
    ],
)
async def test_a_bad_config_value_is_400_naming_its_field(
    http: httpx.AsyncClient, alice: Tenant, field: str, value: Any
) -> None:
    response = await post(http, alice, {**GOOD, field: value})
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]


async def test_two_config_fields_are_400(http: httpx.AsyncClient, alice: Tenant) -> None:
    files = [
        ("config", (None, orjson.dumps(GOOD).decode())),
        ("config", (None, orjson.dumps({**GOOD, "code_path": "/etc"}).decode())),
        ("code", ("b.zip", code_bundle(), "application/zip")),
    ]
    response = await http.post("/v2/deployment/", files=files, headers=alice.auth)
    assert response.status_code == 400
    assert "more than once" in response.json()["error"]


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def lying_bundle() -> bytes:
    """app.py plus a member whose directory entry claims 600 MiB (a bomb's signature)."""
    data = bytearray(zipped({"app.py": b"def handler(x=None):\n    return x\n", "big": b"x"}))
    central = data.rfind(b"PK\x01\x02")  # the last central entry: "big"
    data[central + 24 : central + 28] = (600 * 1024 * 1024).to_bytes(4, "little")
    return bytes(data)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (zipped({"app.py": b"", "../../escape.py": b""}), "escapes"),
        (zipped({"other.py": b"def handler(): pass\n"}), "not in the code bundle"),
        (lying_bundle(), "limit"),
    ],
)
async def test_a_bundle_the_agent_would_refuse_is_400(
    http: httpx.AsyncClient, alice: Tenant, code: bytes, message: str
) -> None:
    response = await post(http, alice, GOOD, code)
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]


# -- fuzz ------------------------------------------------------------------------------------
_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.lists(st.one_of(st.integers(), st.text(max_size=8)), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.integers(), st.text(max_size=6)), max_size=3),
)
_FIELDS = [
    "timeout", "max_retries", "retry_for", "retry_backoff", "ttl", "max_pending_tasks",
    "workers", "keep_warm_seconds", "autoscaler", "callback_url", "authorized", "cpu", "memory",
    "env", "handler", "code_path", "secrets", "image", "when", "timezone",
]
_AUTOSCALER = st.fixed_dictionaries(
    {}, optional={k: _ANY for k in ("min_containers", "max_containers", "tasks_per_container")}
)
_CONFIG = st.fixed_dictionaries(
    {}, optional={**{f: _ANY for f in _FIELDS}, "autoscaler": st.one_of(_ANY, _AUTOSCALER)}
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(extra=_CONFIG)
async def test_fuzzed_configs_are_200_or_400_and_the_agent_still_ticks(
    http: httpx.AsyncClient, store: Store, alice: Tenant, tmp_path: Path, extra: dict[str, Any]
) -> None:
    response = await post(http, alice, {**GOOD, **extra})
    assert response.status_code in (200, 400), (extra, response.text)
    # Whatever was stored, an agent over the store adopts it and ticks (it reserves no CPU,
    # so no container starts).
    agent = Agent(store, AgentSettings(cpu_capacity=0, code_cache=tmp_path / "cache"))
    await agent.tick(1e9)
    assert not agent.broken
    if response.status_code == 200:
        assert response.json()["stub_id"] in agent.stubs


def test_the_fuzz_covers_every_a3_field() -> None:
    from conveyor.queue_config import QueueConfig

    assert set(QueueConfig.__dataclass_fields__) - {"name"} == set(_FIELDS)
