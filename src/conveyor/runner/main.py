"""The worker process: ``python -m conveyor.runner.main``, spawned and fed by an agent.

It speaks the frame protocol of :mod:`conveyor.runner.wire` on stdin and its *original* stdout
(its stdout and stderr become pipes of :mod:`conveyor.runner.capture`). The
first frame is ``init``: import the handler once, run ``on_start`` once, answer ``ready``.
Then one ``run`` at a time, each answered by ``started`` and ``done``, until ``stop`` or the
end of stdin. The per-task path does no imports and no signature inspection: it is the hot
path of every task.

The process dies with its agent (DESIGN A13), whatever killed the agent: the kernel kills it
when its parent dies (Linux), and the end of stdin ends it at once, even mid-task.
"""

from __future__ import annotations

import base64
import contextlib
import inspect
import os
import queue
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import orjson

from conveyor.error_info import ErrorInfo
from conveyor.policy import is_retryable, qualified_name
from conveyor.queue_config import QueueConfig
from conveyor.runner import loading, wire
from conveyor.runner.capture import Capture
from conveyor.sdk import outputs
from conveyor.sdk.decorator import HandlerShape, TaskContext, TaskQueue

#: Exit codes, read by the agent.
EXIT_OK = 0
EXIT_INIT_FAILED = 3
EXIT_PROTOCOL = 4

#: ``prctl`` option of ``<linux/prctl.h>``: the signal sent to this process when its parent dies.
_PR_SET_PDEATHSIG = 1

if TYPE_CHECKING:
    from asyncio import AbstractEventLoop

_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
#: Where the runner's own frames come from: none of them is shown in a task's traceback.
_OWN_FILES = frozenset({__file__, loading.__file__})


def error_info(exc: BaseException) -> dict[str, str]:
    """The ``ErrorInfo`` of an exception as a frame's ``error``, from the user's frames on.

    Frames up to the last one of the runner's modules (its own calls, the event loop an async
    handler ran on) say nothing to the user and are left out.
    """
    start: TracebackType | None = exc.__traceback__
    tb = start
    while tb is not None:
        if tb.tb_frame.f_code.co_filename in _OWN_FILES:
            start = tb.tb_next
        tb = tb.tb_next
    formatted = "".join(traceback.format_exception(type(exc), exc, start))
    return ErrorInfo(qualified_name(type(exc)), str(exc), formatted).to_dict()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"base64": base64.b64encode(value).decode("ascii")}
    raise TypeError


class Runner:
    """What runs in a worker process: a loaded handler, ready to run tasks one at a time."""

    def __init__(
        self, init: Mapping[str, Any], send: Callable[[dict[str, Any]], None], capture: Capture
    ) -> None:
        self._send = send  # a frame, written with ``capture.lock`` held
        self._capture = capture
        self._config = QueueConfig.from_dict(init["config"])
        self._container_id = str(init.get("container_id", ""))
        self._stub_id = str(init.get("stub_id", ""))
        self._stub_type = str(init.get("stub_type", ""))
        target = loading.load_handler(init["code_root"], self._config.handler)
        on_start: Callable[[], Any] | None = None
        retry_classes: tuple[type[BaseException], ...] = ()
        if isinstance(target, TaskQueue):
            on_start, retry_classes = target.on_start, target.retry_for
            target = target.func
        if not callable(target):
            raise TypeError(f"handler {self._config.handler!r} is not callable")
        self._func: Callable[..., Any] = target
        self._shape = HandlerShape.of(target)
        self._retry_for = self._config.retry_for
        # The decorator's own classes also match, whatever name the module had when deployed.
        self._retry_classes = retry_classes
        self._loop: AbstractEventLoop | None = None
        self._on_start_value = self._settle(on_start()) if on_start is not None else None

    def _settle(self, value: Any) -> Any:
        """Await ``value`` on this process's one event loop if it is awaitable."""
        if not inspect.isawaitable(value):
            return value
        if self._loop is None:
            import asyncio  # once per process, and only for async code: faster start

            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
        return self._loop.run_until_complete(_await(value))

    def run(self, msg: Mapping[str, Any]) -> None:
        task_id, fence = msg["task_id"], msg["fence"]
        capture = self._capture
        with capture.lock:  # lines read from here on are this task's
            capture.task_id = task_id
            self._send({"op": "started", "task_id": task_id, "fence": fence, "at": time.time()})
        outputs.reset()
        result: str | None = None
        error: dict[str, str] | None = None
        retryable = False
        try:
            payload = orjson.loads(msg["payload"]) if msg.get("payload") else {}
            args = payload.get("args") or ()
            kwargs = payload.get("kwargs") or {}
            context = None
            if self._shape.wants_context:
                context = TaskContext(
                    task_id=task_id,
                    attempt=msg.get("attempt", 1),
                    container_id=self._container_id,
                    stub_id=self._stub_id,
                    stub_type=self._stub_type,
                    callback_url=msg.get("callback_url"),
                    timeout=msg.get("timeout", self._config.timeout),
                    on_start_value=self._on_start_value,
                )
            kwargs = self._shape.complete(kwargs, msg.get("callback_url"), context)
            value = self._settle(self._func(*args, **kwargs))
        except Exception as exc:
            error = error_info(exc)
            retryable = isinstance(exc, self._retry_classes) or is_retryable(exc, self._retry_for)
        else:
            try:
                result = orjson.dumps(value, default=_json_default, option=_JSON_OPTIONS).decode()
            except TypeError:
                error = error_info(
                    TypeError(
                        f"the handler returned a {type(value).__name__}, which is not "
                        "JSON-serialisable; return JSON types or bytes, or save files with Output"
                    )
                )
        saved = [
            {"name": name, "data": base64.b64encode(data).decode("ascii")}
            for name, data in outputs.take()
        ]
        with capture.task_end():  # the task's last lines, then its done
            self._send(
                {
                    "op": "done",
                    "task_id": task_id,
                    "fence": fence,
                    "status": "FAILED" if error is not None else "COMPLETE",
                    "result": result,
                    "error": error,
                    "retryable": retryable,
                    "outputs": saved,
                }
            )


async def _await(value: Any) -> Any:
    return await value


#: The stderr this process was started with (the agent's), for the runner's own words.
_own_stderr = 2


def _say(text: str) -> None:
    with contextlib.suppress(OSError):
        os.write(_own_stderr, f"conveyor.runner.main: {text}\n".encode())


def _frame_streams() -> tuple[IO[bytes], IO[bytes]]:
    """Take stdin and stdout for frames; leave the handler /dev/null as its stdin (its
    stdout and stderr become ``Capture``'s pipes)."""
    global _own_stderr
    frames_in = os.fdopen(os.dup(0), "rb")
    frames_out = os.fdopen(os.dup(1), "wb")
    _own_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process
    return frames_in, frames_out


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies; exit if that already happened.

    Done here, not in the agent's ``preexec_fn``: that arms whatever the agent executes, which
    will be bubblewrap once containers are sandboxed, not this process. The parent is whatever
    spawned this process, the agent or such a wrapper (which dies with the agent itself:
    bwrap's ``--die-with-parent``), so the check is against the parent seen at start: one that
    died between ``getppid()`` and ``prctl`` is missed by ``prctl`` but seen by the second
    ``getppid()``. One that died even earlier, while Python started, shows as a parent other
    than the pid in ``wire.AGENT_PID_ENV``, which the agent sets when it spawns this process
    directly. Sandboxed, the parent is bwrap's init (pid 1 of this process's PID namespace)
    and the variable is not set: an init that died takes the whole namespace with it.
    ``PDEATHSIG`` follows the parent *thread* that spawned the process: the agent spawns from
    its event loop's thread, which lives as long as the agent. Without ``prctl``
    (not Linux) the pipe watch of ``_Inbox`` remains.
    """
    parent = os.getppid()
    spawner = os.environ.pop(wire.AGENT_PID_ENV, None)  # not the handler's business
    if sys.platform == "linux":
        import ctypes  # here: only Linux has prctl

        # (a libc without prctl leaves the pipe watch alone on duty)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent or spawner not in (None, str(parent)):
        os._exit(EXIT_OK)


class _Inbox:
    """Frames from the agent, read on a daemon thread, so the end of stdin is seen even while
    a handler runs: it means the agent is gone, and nobody will read what the handler does.

    The main thread marks the time it spends in user code (``enter``/``leave``); the end of
    stdin then ends the process at once, else the main thread returns when it gets to it (an
    idle process exits cleanly, and a frame already read, e.g. a bad first frame, is answered).
    The two flags are set before each side reads the other's, so one of them always sees it.
    """

    def __init__(self, stream: IO[bytes]) -> None:
        self._frames: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._closed = False
        self._busy = False
        self.get = self._frames.get
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[bytes]) -> None:
        try:
            while (message := wire.read_frame(stream)) is not None:
                self._frames.put(message)
        except ValueError as exc:
            _say(f"bad frame from the agent: {exc}")
            os._exit(EXIT_PROTOCOL)
        except OSError:  # a pipe that cannot be read is as ended as a closed one
            pass
        self._closed = True
        if self._busy:
            os._exit(EXIT_OK)
        self._frames.put(None)

    def enter(self) -> None:
        """About to run user code: exit instead if the agent is already gone."""
        self._busy = True
        if self._closed:
            os._exit(EXIT_OK)

    def leave(self) -> None:
        self._busy = False


def main() -> int:
    _die_with_parent()
    frames_in, frames_out = _frame_streams()
    inbox = _Inbox(frames_in)

    def write(message: dict[str, Any]) -> None:
        try:
            wire.write_frame(frames_out, message)
        except BrokenPipeError:  # the agent is gone: nobody to tell, nothing left to do
            os._exit(EXIT_OK)

    # One channel, one lock: the reader thread's log frames and this thread's frames.
    capture = Capture(write, threading.Lock())
    capture.start()

    def send(message: dict[str, Any]) -> None:
        with capture.lock:
            write(message)

    first = inbox.get()
    if first is None:
        return EXIT_OK
    if first.get("op") != "init":
        _say(f"expected an init frame, got {first.get('op')!r}")
        return EXIT_PROTOCOL
    inbox.enter()
    try:
        runner = Runner(first, write, capture)
    except BaseException as exc:  # any failure of user code, even SystemExit, is reported
        inbox.leave()  # user code is over: the agent closing the pipe now gets this exit code
        with capture.task_end():  # what on_start printed first
            write({"op": "init_failed", "error": error_info(exc)})
        return EXIT_INIT_FAILED
    inbox.leave()
    with capture.task_end():  # what on_start printed is the container's, sent before ready:
        write({"op": "ready", "pid": os.getpid()})  # read later, it would be the first task's
    while True:
        message = inbox.get()
        if message is None or message.get("op") == "stop":
            return EXIT_OK
        if message.get("op") == "run":
            inbox.enter()
            runner.run(message)
            inbox.leave()


if __name__ == "__main__":
    sys.exit(main())
