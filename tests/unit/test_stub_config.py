"""A stub carries its queue config parsed once, with the defaults of ``QueueConfig`` alone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from conveyor.errors import ConfigError
from conveyor.queue_config import QueueConfig
from conveyor.server.store.records import DEPLOYMENT, Stub


def stub(config: str, name: str = "q") -> Stub:
    return Stub(str(uuid.uuid4()), "w", name, DEPLOYMENT, 1, config, 1, 1, 0, 0)


def test_the_same_row_read_again_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    parse = QueueConfig.stored

    def counted(name: str, text: str) -> QueueConfig:
        calls.append(text)
        return parse(name, text)

    monkeypatch.setattr(QueueConfig, "stored", staticmethod(counted))
    # a text no other test uses, so no earlier read has cached it
    text = QueueConfig(name="once", handler="a.py:f", ttl=1234, max_pending_tasks=7).to_json()
    reads = [stub(text, "once") for _ in range(3)]
    configs = [r.queue_config for r in reads for _ in range(2)]
    assert len(calls) == 1
    assert {(c.ttl, c.max_pending_tasks) for c in configs} == {(1234, 7)}


def test_a_partial_config_takes_the_queue_config_defaults() -> None:
    config = stub('{"ttl": 60}', "partial").queue_config
    defaults = QueueConfig(name="partial", handler="")
    assert config == QueueConfig(name="partial", handler="", ttl=60)
    assert (config.max_retries, config.timeout, config.max_pending_tasks, config.authorized) == (
        defaults.max_retries, defaults.timeout, defaults.max_pending_tasks, defaults.authorized
    )


@pytest.mark.parametrize("text", ["not json", "[1]", '{"ttl": 0}', '{"colour": "red"}'])
def test_a_bad_stored_config_fails_its_readers_not_the_row(text: str) -> None:
    bad = stub(text)
    assert bad.config == text
    for _ in range(2):  # every read fails alike: the failure is kept, not a half-made config
        with pytest.raises(ConfigError):
            _ = bad.queue_config


def test_stubs_compare_on_their_columns() -> None:
    fields: dict[str, Any] = {"id": "s", "workspace_id": "w", "name": "q", "type": DEPLOYMENT,
                              "version": 1, "config": "{}", "config_version": 1, "object_id": 1,
                              "created_at": 0, "updated_at": 0}
    assert Stub(**fields) == Stub(**fields)
    assert "QueueConfig" not in repr(Stub(**fields))
