"""How a worker process ended, in words a user can act on (after rq's ``waitpid`` messages)."""

from __future__ import annotations

import signal

from conveyor.error_info import ErrorInfo
from conveyor.server.store.records import ProcessExit


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


def process_exit(returncode: int | None) -> ProcessExit:
    """An attempt's ``exit``: the code, or the name of the signal that killed the process."""
    if returncode is None or returncode >= 0:
        return ProcessExit(code=returncode)
    try:
        return ProcessExit(signal=signal.Signals(-returncode).name)
    except ValueError:
        return ProcessExit(signal=f"signal {-returncode}")
