"""The sandbox in tests: every agent the suite starts runs its worker processes sandboxed
(DESIGN A13), with the test's own folders bound in (``--sandbox-bind``) where its handlers
write markers and ledgers.

Without bubblewrap a sandbox test is skipped locally and fails when ``CI=true``; the other
tests then run their agents with ``--no-sandbox`` locally (a developer's machine without
bwrap), never in CI.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

from conveyor.server.agent.sandbox import unavailable


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@functools.cache
def _problem() -> str | None:
    return unavailable()


def require_sandbox() -> None:
    """Skip the calling test without a working bubblewrap, or fail it in CI."""
    problem = _problem()
    if problem is None:
        return
    if in_ci():
        pytest.fail(f"cannot sandbox: {problem}")
    pytest.skip(f"cannot sandbox: {problem}")


def _sandboxed() -> bool:
    problem = _problem()
    if problem is not None and in_ci():
        pytest.fail(f"cannot sandbox: {problem}")
    return problem is None


def sandbox_settings(*binds: str | os.PathLike[str]) -> dict[str, Any]:
    """``AgentSettings`` fields: sandboxed, with ``binds`` writable inside."""
    if not _sandboxed():
        return {"sandbox": False}
    return {"sandbox": True, "sandbox_binds": tuple(str(Path(b).resolve()) for b in binds)}


def sandbox_flags(*binds: str | os.PathLike[str]) -> list[str]:
    """``conveyor serve``/``worker`` flags: sandboxed, with ``binds`` writable inside."""
    if not _sandboxed():
        return ["--no-sandbox"]
    flags = []
    for bind in binds:
        flags += ["--sandbox-bind", str(Path(bind).resolve())]
    return flags
