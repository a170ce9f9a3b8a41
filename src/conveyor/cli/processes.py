"""``conveyor server --processes N``: N gateway processes on one port, behind SO_REUSEPORT.

A Python process serves from one core at most (the GIL), so a gateway meant to use the machine
runs a process per core. Each child is a whole gateway (its own store connections, its own
callback sender, as separate gateways on one store always were); the kernel spreads new
connections over the children's sockets, so no process hands requests to another. This
parent holds no socket and no store: it checks the port, starts the children, passes the stop
signal on, and stops them all when one ends unexpectedly (a supervisor such as systemd then
restarts the whole).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from types import FrameType

import typer

from conveyor.cli.report import run
from conveyor.server.run import run_server, try_listening
from conveyor.server.settings import ServerSettings

_PR_SET_PDEATHSIG = 1


def run_processes(settings: ServerSettings, count: int, verbose: bool) -> int:
    """Serve ``settings`` from ``count`` processes until SIGTERM or SIGINT; the exit code."""
    # Bound without SO_REUSEPORT first: a port anything listens on (another conveyor's
    # children included) is an error line here, never a port shared by mistake.
    try_listening(settings.host, settings.port)
    spawn = multiprocessing.get_context("spawn")
    children: list[BaseProcess] = [
        spawn.Process(target=_child, args=(settings, verbose), name=f"conveyor-gateway-{n}")
        for n in range(count)
    ]
    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        _signal_all(children)

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    for child in children:
        child.start()
    code = 0
    running = list(children)
    while running:
        for ended in wait([child.sentinel for child in running]):
            child = next(c for c in running if c.sentinel == ended)
            child.join()
            running.remove(child)
            if child.exitcode and not stopping:  # one gone wrong: the others stop too
                stopping, code = True, 1
                _signal_all(running)
    return code


def _signal_all(children: list[BaseProcess]) -> None:
    for child in children:
        if child.pid is not None and child.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)


def _child(settings: ServerSettings, verbose: bool) -> None:
    """One gateway process; it ends with its parent (``PR_SET_PDEATHSIG``), so a parent that
    was SIGKILLed leaves no gateway holding the port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format=f"%(asctime)s %(levelname)s [gateway {os.getpid()}] %(message)s",
    )
    try:
        run(run_server(settings, reuse_port=True))
    except typer.Exit as exc:  # the error line is printed: only the exit code is left
        raise SystemExit(exc.exit_code) from None
