from __future__ import annotations

import pytest

from conveyor.policy import (
    backoff_s,
    desired_containers,
    is_retryable,
    qualified_name,
    should_retry,
)
from conveyor.queue_config import AutoscalerConfig


@pytest.mark.parametrize(
    ("attempt", "max_retries", "retryable", "expected"),
    [
        (1, 3, True, True),
        (3, 3, True, True),
        (4, 3, True, False),  # 1 + 3 attempts made: none left
        (5, 3, True, False),
        (1, 0, True, False),  # no retries at all
        (1, 5, False, False),  # not a retryable failure
        (5, 5, True, True),
        (6, 5, True, False),
    ],
)
def test_should_retry(attempt: int, max_retries: int, retryable: bool, expected: bool) -> None:
    assert should_retry(attempt, max_retries, retryable) is expected


@pytest.mark.parametrize(
    ("base", "attempt", "jitter", "expected"),
    [
        (0, 1, 0.0, 0.0),
        (0, 4, 0.5, 0.0),
        (1.5, 1, 0.0, 1.5),
        (1.5, 2, 0.0, 3.0),
        (1.5, 3, 0.0, 6.0),
        (2, 4, 0.0, 16.0),
        (2, 1, 0.25, 2.5),
        (2, 3, 0.1, 8.8),
        (1, 0, 0.0, 1.0),  # a nonsense attempt number never shrinks the wait below base
    ],
)
def test_backoff(base: float, attempt: int, jitter: float, expected: float) -> None:
    assert backoff_s(base, attempt, jitter) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("in_flight", "minimum", "maximum", "per", "expected"),
    [
        (0, 0, 1, 1, 0),  # scale to zero
        (0, 2, 5, 1, 2),  # min_containers kept warm
        (1, 0, 1, 1, 1),
        (7, 0, 10, 1, 7),
        (50, 0, 4, 1, 4),  # capped at max_containers
        (11, 0, 10, 5, 3),  # ceil(11 / 5)
        (10, 0, 10, 5, 2),
        (1, 0, 10, 100, 1),
        (3, 2, 10, 10, 2),
        (-1, 0, 3, 1, 0),
    ],
)
def test_desired_containers(
    in_flight: int, minimum: int, maximum: int, per: int, expected: int
) -> None:
    scaler = AutoscalerConfig(
        min_containers=minimum, max_containers=maximum, tasks_per_container=per
    )
    assert desired_containers(in_flight, scaler) == expected


class Transient(Exception):
    pass


class Flaky(Transient):
    pass


def test_qualified_name() -> None:
    assert qualified_name(ValueError) == "ValueError"
    assert qualified_name(Transient) == f"{__name__}.Transient"


@pytest.mark.parametrize(
    ("exc", "retry_for", "expected"),
    [
        (Transient(), [f"{__name__}.Transient"], True),
        (Flaky(), [f"{__name__}.Transient"], True),  # subclasses match
        (Transient(), [f"{__name__}.Flaky"], False),  # a base does not match a subclass name
        (ValueError(), [f"{__name__}.Transient"], False),
        (ValueError(), [], False),
        (FileNotFoundError(), ["OSError"], True),
        (FileNotFoundError(), ["builtins.OSError"], True),
        (KeyError(), ["LookupError", "OSError"], True),
        (ValueError(), ["Transient"], False),  # a bare name only means a builtin
    ],
)
def test_is_retryable(exc: BaseException, retry_for: list[str], expected: bool) -> None:
    assert is_retryable(exc, retry_for) is expected
