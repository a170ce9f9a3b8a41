"""What a worker process writes to its stdout and stderr, caught and sent to the agent as
``log`` frames (DESIGN A8).

File descriptors 1 and 2 of the process become pipes that this process reads itself, so
whatever writes to them is caught: ``print``, ``logging``, ``warnings``, C code, and child
processes that inherit them. Lines are tagged with the task running when they were read, and
go on the one frame channel the task's ``done`` goes on, under one lock: at a task's end the
main thread drains the pipes itself before ``done``, so its last lines always come first.
A reader thread sends lines as they come, so lines written before a kill are already with
the agent.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: A line longer than this (bytes) is cut there; the rest up to its newline is dropped.
MAX_LINE = 16 * 1024
#: Bytes read per ``read`` call.
_CHUNK = 64 * 1024
#: At a task's end, at most this much is drained (a child still writing cannot hold it up).
_DRAIN_LIMIT = 4 * 1024 * 1024
#: Stream numbers in ``log`` frames: the file descriptors.
STDOUT, STDERR = 1, 2


class Capture:
    """The process's stdout and stderr as pipes, read into ``log`` frames.

    ``send`` writes one frame; it is only called with ``lock`` held, which every other writer
    of the frame channel also holds.
    """

    def __init__(self, send: Callable[[dict[str, Any]], None], lock: threading.Lock) -> None:
        self._send = send
        self.lock = lock
        self._fds: dict[int, int] = {}  # read end → stream
        self._partial: dict[int, bytearray] = {STDOUT: bytearray(), STDERR: bytearray()}
        self._cutting: dict[int, bool] = {STDOUT: False, STDERR: False}
        #: The task whose lines are being read, or None (the container's own lines).
        self.task_id: str | None = None
        for stream in (STDOUT, STDERR):
            read, write = os.pipe()
            os.set_blocking(read, False)
            os.dup2(write, stream)  # inheritable: a child process writes here too
            os.close(write)
            self._fds[read] = stream
        self._ready = select.poll()
        for fd in self._fds:
            self._ready.register(fd, select.POLLIN)

    def start(self) -> None:
        threading.Thread(target=self._pump, name="conveyor-capture", daemon=True).start()

    def _pump(self) -> None:
        poller = select.poll()
        for fd in self._fds:
            poller.register(fd, select.POLLIN)
        while True:
            ready = poller.poll()
            with self.lock:
                for fd, _ in ready:
                    if not self._read(fd, _CHUNK):
                        poller.unregister(fd)  # every writer closed it (the handler did)

    def _read(self, fd: int, budget: int) -> bool:
        """Read what ``fd`` has (up to ``budget`` bytes) and send its whole lines; False at
        its end. Call with ``lock`` held."""
        stream = self._fds[fd]
        got = 0
        lines: list[list[Any]] = []
        open_ = True
        while got < budget:
            try:
                data = os.read(fd, _CHUNK)
            except BlockingIOError:
                break
            if not data:
                open_ = False
                break
            got += len(data)
            self._split(stream, data, lines)
        self._emit(lines)
        return open_

    def _split(self, stream: int, data: bytes, lines: list[list[Any]]) -> None:
        partial = self._partial[stream]
        now = time.time()
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if not self._cutting[stream]:
                partial += data[start:end]
                lines.append([stream, now, _text(partial)])
            partial.clear()
            self._cutting[stream] = False
            start = end + 1
        if not self._cutting[stream]:
            partial += data[start:]
            if len(partial) >= MAX_LINE:
                lines.append([stream, now, _text(partial)])
                partial.clear()
                self._cutting[stream] = True

    def _emit(self, lines: list[list[Any]]) -> None:
        if lines:
            self._send({"op": "log", "task_id": self.task_id, "lines": lines})

    @contextlib.contextmanager
    def task_end(self) -> Iterator[None]:
        """Send every line written so far, the unfinished last ones too, as the current
        task's; the body (which sends ``done``) runs with ``lock`` held, right after."""
        with contextlib.suppress(ValueError, OSError):  # a handler may have closed them
            sys.stdout.flush()  # before the lock: a full pipe waits for the reader thread
            sys.stderr.flush()
        with self.lock:
            self._drain()
            yield
            self.task_id = None

    def _drain(self) -> None:
        # One poll, no read, for a task that wrote nothing since the reader thread last ran:
        # the hot path of every task.
        for fd, _ in self._ready.poll(0):
            self._read(fd, _DRAIN_LIMIT)
        lines: list[list[Any]] = []
        now = time.time()
        for stream, partial in self._partial.items():
            if partial:
                lines.append([stream, now, _text(partial)])
                partial.clear()
            self._cutting[stream] = False
        self._emit(lines)


def _text(data: bytearray) -> str:
    return bytes(data[:MAX_LINE]).decode("utf-8", "replace").removesuffix("\r")
