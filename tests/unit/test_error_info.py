"""A task's ``error``: one record, one shape, one convention for a missing traceback."""

from __future__ import annotations

import orjson

from conveyor.error_info import ErrorInfo
from conveyor.runner.main import error_info
from conveyor.server.agent.exits import crash_error
from conveyor.server.store.sweep import LEASE_LOST_ERROR


def test_round_trip_keeps_the_api_shape() -> None:
    error = ErrorInfo("ValueError", "bad width", "Traceback ...")
    assert error.to_dict() == {"type": "ValueError", "message": "bad width",
                               "traceback": "Traceback ..."}
    assert list(orjson.loads(error.to_json())) == ["type", "message", "traceback"]
    assert ErrorInfo.from_json(error.to_json()) == error


def test_an_error_without_traceback_has_an_empty_one_everywhere() -> None:
    assert ErrorInfo("TimeoutError", "slow").traceback == ""
    assert crash_error("killed")["traceback"] == ""
    assert orjson.loads(LEASE_LOST_ERROR) == {
        "type": "ContainerLost",
        "message": "the container running this attempt stopped renewing its lease",
        "traceback": "",
    }


def test_errors_stored_with_a_null_traceback_read_as_empty() -> None:
    stored = '{"type": "ContainerLost", "message": "lost", "traceback": null}'
    assert ErrorInfo.from_json(stored) == ErrorInfo("ContainerLost", "lost", "")
    assert ErrorInfo.from_dict({}) == ErrorInfo("Error", "", "")


def test_the_runner_reports_an_exception_in_the_same_shape() -> None:
    try:
        raise KeyError("missing")
    except KeyError as exc:
        reported = error_info(exc)
    assert ErrorInfo.from_dict(reported).to_dict() == reported
    assert reported["type"] == "KeyError" and reported["message"] == "'missing'"
    assert 'raise KeyError("missing")' in reported["traceback"]
