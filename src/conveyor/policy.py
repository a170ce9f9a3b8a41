"""Pure policy functions: retry decision, backoff, autoscaling, exception matching.

No I/O and no clock: the agent and the store call these with the facts they hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from conveyor.queue_config import AutoscalerConfig

#: The longest wait before a retry (7 days; a task's ttl, at most a day, ends it sooner).
BACKOFF_CAP_S = 7 * 86400


def should_retry(attempt: int, max_retries: int, retryable: bool) -> bool:
    """Whether a failed attempt gets another one.

    Parameters
    ----------
    attempt
        Attempts made so far, including the one that just failed.
    max_retries
        The queue's ``max_retries``: a task may have ``1 + max_retries`` attempts.
    retryable
        Whether the failure is of a retryable kind (a crash, or a ``retry_for`` exception).
    """
    return retryable and attempt < 1 + max_retries


def backoff_s(base_s: float, attempt: int, jitter: float = 0.0) -> float:
    """Seconds to wait before the retry that follows failed attempt number ``attempt``.

    ``base_s`` after the first attempt, doubled for each one after it, stretched by
    ``jitter`` (a fraction the caller draws, e.g. ``random.uniform(0, 0.1)``), and never more
    than ``BACKOFF_CAP_S``: the store adds it to a clock in integer microseconds, and a row
    stored before ``retry_backoff`` was bounded (or a NaN) must not overflow that write.
    """
    if not base_s > 0:  # also NaN
        return 0.0
    exponent = min(max(attempt, 1) - 1, 64)
    delay = float(base_s) * 2.0**exponent * (1 + max(jitter, 0.0))
    return delay if delay <= BACKOFF_CAP_S else float(BACKOFF_CAP_S)


def desired_containers(in_flight: int, autoscaler: AutoscalerConfig) -> int:
    """Containers a stub should have for ``in_flight`` tasks (PENDING + RETRY + RUNNING)."""
    wanted = math.ceil(max(in_flight, 0) / autoscaler.tasks_per_container)
    return max(autoscaler.min_containers, min(autoscaler.max_containers, wanted))


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class; builtins go bare (``ValueError``), as users write them."""
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def is_retryable(exc: BaseException, retry_for: Sequence[str]) -> bool:
    """Whether ``exc`` is an instance of a class named in ``retry_for`` (subclasses match).

    Names are :func:`qualified_name` values; ``builtins.ValueError`` is accepted too.
    """
    if not retry_for:
        return False
    wanted = {name.removeprefix("builtins.") for name in retry_for}
    return any(qualified_name(cls) in wanted for cls in type(exc).__mro__)
