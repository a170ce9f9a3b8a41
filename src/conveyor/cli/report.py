"""How a command ends: its two consoles, its exit codes, and a failure as one ``error:`` line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import typer
import uvloop
from rich.console import Console

from conveyor.cli import render
from conveyor.errors import ConveyorError, WaitTimeout

T = TypeVar("T")

#: Exit codes of the waiting commands.
EXIT_OK, EXIT_FAILED, EXIT_TIMEOUT = 0, 1, 2

out = Console()
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 200  # whole table rows for pipes (grep, less), not 80 columns
err = Console(stderr=True)


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """Turn a failure into one ``error:`` line and an exit code: 2 for a wait that ran out."""
    try:
        yield
    except WaitTimeout as exc:
        render.print_error(err, str(exc))
        raise typer.Exit(EXIT_TIMEOUT) from None
    except (ConveyorError, OSError) as exc:
        render.print_error(err, str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop; a conveyor error becomes one line on stderr and exit code 1."""
    with reported():
        return uvloop.run(coro)
    raise AssertionError("unreachable: reported exits on errors")
