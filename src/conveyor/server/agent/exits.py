"""How a worker process ended, in words a user can act on (after rq's ``waitpid`` messages)."""

from __future__ import annotations

import signal

from conveyor.error_info import ErrorInfo


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "worker process is still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker process terminated unexpectedly: killed by {name} (signal {-returncode})"
    return f"worker process terminated unexpectedly with exit code {returncode}"


def crash_error(message: str) -> dict[str, str]:
    """The task ``error`` object written when a worker process dies mid-task."""
    return ErrorInfo("WorkerCrashed", message).to_dict()
