"""Lines of tasks on their way to the store (DESIGN A8): gathered from every process's ``log``
frames and written in batches, each task's in order.

Outcomes are written after the lines before them (``flush`` first, one write at a time), so
a task's lines are all stored once its terminal status can be read. Lines outside any task
go to the agent's own log, tagged with their container.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from typing import Any

from conveyor import clock
from conveyor.errors import StoreError
from conveyor.runner.capture import MAX_LINE, STDERR, STDOUT
from conveyor.server.agent.handle import Attempt, ProcessHandle
from conveyor.server.store.base import Store
from conveyor.server.store.records import LogLimits, LogLine, LogStream

log = logging.getLogger("conveyor.server.agent")
container_log = logging.getLogger("conveyor.container")

_STREAMS: dict[Any, LogStream] = {STDOUT: "stdout", STDERR: "stderr"}
#: Lines waiting past this start a write at once instead of at the next interval.
_BATCH = 2000
#: Lines kept for a store that does not answer; past that the oldest are dropped.
_BACKLOG = 100_000
#: Writes of one batch tried in a row (one per interval) before it is dropped.
_TRIES = 50


class LogSink:
    def __init__(self, store: Store, limits: LogLimits, interval_s: float = 0.1) -> None:
        self._store = store
        self._limits = limits
        self._interval_s = interval_s
        self._pending: list[LogLine] = []
        self._closing: list[tuple[str, int]] = []
        #: Lines and bytes each running attempt has sent: past the limits, lines are only
        #: counted (``_dropped``), not shipped to a store that would drop them anyway.
        self._sent: dict[tuple[str, int], list[int]] = {}
        self._dropped: Counter[str] = Counter()
        self._lock = asyncio.Lock()
        self._failures = 0
        self._wake = asyncio.Event()

    def add(self, process: ProcessHandle, attempt: Attempt | None, lines: list[Any]) -> None:
        """A ``log`` frame's lines (``LogHandler``); malformed entries are skipped."""
        for entry in lines:
            if not (isinstance(entry, list) and len(entry) == 3):
                continue
            stream, at, text = entry
            if stream not in _STREAMS or not isinstance(text, str):
                continue
            text = text[:MAX_LINE]
            if attempt is None:
                container_log.info("[%s] %s", process.container_id, text)
                continue
            key = (attempt.task_id, attempt.attempt)
            sent = self._sent.setdefault(key, [0, 0])
            text = _storable(text)
            size = len(text.encode())
            if sent[0] >= self._limits.max_lines or sent[1] + size > self._limits.max_bytes:
                self._dropped[attempt.task_id] += 1
                continue
            sent[0] += 1
            sent[1] += size
            seconds = at if isinstance(at, int | float) else clock.now()
            self._pending.append(
                LogLine(attempt.task_id, attempt.attempt, _STREAMS[stream],
                        clock.to_us(seconds), text)
            )  # fmt: skip
        if len(self._pending) >= _BATCH:
            self._wake.set()

    def end(self, attempt: Attempt) -> None:
        """The attempt is over: its marker line, if its task dropped lines, goes with the
        next write. Nothing to do for an attempt that wrote nothing."""
        if self._sent.pop((attempt.task_id, attempt.attempt), None) is not None:
            self._closing.append((attempt.task_id, attempt.attempt))

    async def flush(self) -> None:
        """Write what is waiting; one write at a time, so lines are stored in order."""
        async with self._lock:
            if not (self._pending or self._closing):
                return
            lines, closing, dropped = self._pending, self._closing, self._dropped
            self._pending, self._closing, self._dropped = [], [], Counter()
            try:
                await self._store.append_logs(lines, self._limits, closing, dropped=dropped)
            except StoreError as exc:
                self._failures += 1
                if self._failures > _TRIES:
                    log.error("dropping %d log lines: %s", len(lines), exc)
                    self._failures = 0
                    return
                log.warning("writing %d log lines failed (%s); retrying", len(lines), exc)
                self._pending[:0] = lines[-_BACKLOG:]
                self._closing[:0] = closing
                self._dropped.update(dropped)
            except Exception:  # never the outcomes' trouble: they are written next
                log.exception("dropping %d log lines that cannot be stored", len(lines))
            else:
                self._failures = 0

    async def loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            await self.flush()


def _storable(text: str) -> str:
    """``text`` as both stores take it: UTF-8 (no lone surrogates) without NUL characters."""
    try:
        text.encode()
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode()
    return text.replace("\x00", "\ufffd") if "\x00" in text else text
