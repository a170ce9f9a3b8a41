"""DESIGN A3/A13: every config field is checked for type and bounds, in one place
(``QueueConfig``), so the decorator and deploy refuse the same values, naming the field."""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path
from typing import Any

import orjson
import pytest

from conveyor.errors import ConfigError
from conveyor.policy import BACKOFF_CAP_S, backoff_s
from conveyor.queue_config import QueueConfig
from conveyor.server.bundles import MAX_FILES, MAX_UNPACKED_BYTES, check_bundle, unpack

BASE = {"name": "q", "handler": "app.py:handler"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("handler", 5),
        ("retry_for", [1, 2]),
        ("retry_for", "ValueError"),
        ("retry_for", ["not a name"]),
        ("authorized", "no"),
        ("authorized", 1),
        ("env", "abc"),
        ("env", {"1BAD": "x"}),
        ("env", {"A": 1}),
        ("memory", 1e308),
        ("memory", math.inf),
        ("memory", "9999999Ti"),
        ("autoscaler", "x"),
        ("autoscaler", {"max_containers": True}),
        ("autoscaler", {"max_containers": 10**9}),
        ("autoscaler", {"bogus": 1}),
        ("retry_backoff", 1e300),
        ("retry_backoff", math.nan),
        ("timeout", 1e300),
        ("timeout", True),
        ("max_retries", True),
        ("max_retries", 6),
        ("ttl", True),
        ("max_pending_tasks", 1_000_001),
        ("workers", 65),
        ("workers", True),
        ("keep_warm_seconds", 1e300),
        ("cpu", 1e300),
        ("cpu", math.inf),
        ("callback_url", 5),
        ("code_path", 5),
    ],
)
def test_a_value_outside_its_type_or_bounds_is_refused_naming_the_field(
    field: str, value: Any
) -> None:
    with pytest.raises(ConfigError, match=field.split(".")[0]):
        QueueConfig.from_dict({**BASE, field: value})


def test_the_bounds_themselves_are_accepted() -> None:
    config = QueueConfig.from_dict(
        {
            **BASE,
            "timeout": 7 * 86400,
            "max_retries": 5,
            "retry_for": ["ValueError", "app.Busy"],
            "retry_backoff": 86400,
            "ttl": 86400,
            "max_pending_tasks": 1_000_000,
            "workers": 64,
            "autoscaler": {"min_containers": 0, "max_containers": 1000},
            "authorized": False,
            "memory": "1Ti",
            "env": {"A_1": "x"},
        }
    )
    assert config.memory == 1024 * 1024


def test_a_deployment_cannot_set_a_code_path() -> None:
    text = orjson.dumps({**BASE, "code_path": "/etc"})
    with pytest.raises(ConfigError, match="code_path"):
        QueueConfig.from_client(text)
    # What the SDK sends (a null code_path) is fine.
    assert QueueConfig.from_client(orjson.dumps({**BASE, "code_path": None})).code_path is None


def test_the_backoff_is_capped_whatever_the_stored_base() -> None:
    assert backoff_s(1e300, 5) == BACKOFF_CAP_S
    assert backoff_s(math.inf, 1) == BACKOFF_CAP_S
    assert backoff_s(math.nan, 1) == 0.0
    assert backoff_s(10, 10**6) == BACKOFF_CAP_S
    assert backoff_s(2, 3) == 8


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_good_bundle_passes_and_unpacks(tmp_path: Path) -> None:
    bundle = zipped({"app.py": b"def handler():\n    return 1\n", "pkg/util.py": b""})
    check_bundle(bundle, "app.py:handler")
    unpack(bundle, tmp_path)
    assert (tmp_path / "pkg" / "util.py").is_file()


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        (b"not a zip", "not a zip"),
        (zipped({"../evil.py": b"x", "app.py": b""}), "escapes"),
        (zipped({"/abs.py": b"x", "app.py": b""}), "escapes"),
        (zipped({"other.py": b""}), "not in the code bundle"),
    ],
)
def test_a_bundle_the_agent_would_refuse_is_refused(bundle: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_bundle(bundle, "app.py:handler")


def test_a_zip_bomb_is_refused_by_its_directory() -> None:
    bomb = zipped({"app.py": b"", "big.bin": b"\0" * (MAX_UNPACKED_BYTES + 1)})
    assert len(bomb) < 1024 * 1024
    with pytest.raises(ConfigError, match="limit"):
        check_bundle(bomb, "app.py:handler")


def test_a_directory_that_lies_about_sizes_is_caught_while_unpacking(tmp_path: Path) -> None:
    bundle = bytearray(zipped({"app.py": b"", "big.bin": b"\0" * 100_000}))
    # Shrink the declared size of big.bin in both headers: its bytes still decompress.
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = bundle.find(signature, bundle.find(b"big.bin") - 60)
        at = bundle.rfind(signature, 0, bundle.find(b"big.bin", at))
        bundle[at + offset : at + offset + 4] = (10).to_bytes(4, "little")
    for run in (lambda: check_bundle(bytes(bundle)), lambda: unpack(bytes(bundle), tmp_path)):
        with pytest.raises(ConfigError):
            run()


def test_too_many_files_are_refused() -> None:
    bundle = zipped({f"f{i}": b"" for i in range(MAX_FILES + 1)})
    with pytest.raises(ConfigError, match="entries"):
        check_bundle(bundle)
