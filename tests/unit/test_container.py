"""The real worker process, ``python -m conveyor.runner.main``, driven through its pipes."""

from __future__ import annotations

import base64
import io
import itertools
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson
import psutil
import pytest

from conveyor.queue_config import QueueConfig
from conveyor.runner import wire
from conveyor.runner.main import EXIT_OK, EXIT_PROTOCOL
from tests.integration.conftest import pid_alive, until

HANDLERS = '''
import asyncio, os, sys, time

from conveyor import Output, TaskContext, task_queue
from helpers import double  # a sibling module: code_root is on sys.path


class Transient(Exception):
    pass


class Flaky(Transient):
    pass


def add(x, y=0):
    return x + y


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def fail(kind):
    if kind == "flaky":
        raise Flaky("try again")
    raise ValueError("bad input")


@task_queue(retry_for=[Transient])
def decorated_fail():
    raise Flaky("decorated")


def raw():
    return b"\\x00\\xffbytes"


def nested_bytes():
    return {"blob": b"ab"}


def not_json():
    return object()


async def slow_add(x, y):
    await asyncio.sleep(0.01)
    return {"sum": x + y, "loop": id(asyncio.get_running_loop())}


async def async_fail():
    await asyncio.sleep(0)
    raise KeyError("missing")


def warm():
    return {"model": "loaded", "pid": os.getpid()}


@task_queue(on_start=warm)
def with_context(context: TaskContext):
    return {
        "task_id": context.task_id,
        "attempt": context.attempt,
        "container_id": context.container_id,
        "stub_id": context.stub_id,
        "stub_type": context.stub_type,
        "callback_url": context.callback_url,
        "timeout": context.timeout,
        "on_start_value": context.on_start_value,
    }


def wants_callback(x, callback_url=None):
    return callback_url


def noisy(x):
    print("print is caught", x)
    sys.stdout.write("so is sys.stdout\\n")
    sys.stdout.flush()
    os.write(1, b"and raw fd 1 writes\\n")
    os.write(2, b"stderr too, no newline")
    return double(x)


def saves(folder):
    Output.from_bytes("note.txt", b"hello").save()
    Output(path=folder).save()
    return "saved"


def saves_then_fails():
    Output.from_bytes("partial.txt", b"p").save()
    raise RuntimeError("after saving")


def ticking(path, seconds=60.0):
    with open(path, "a") as out:
        for _ in range(int(seconds * 10)):
            out.write(f"{time.time()}\\n")
            out.flush()
            time.sleep(0.1)
        out.write("end\\n")
    return "ticked"
'''


_serial = itertools.count()


#: How the agent starts a worker process.
WORKER_ARGV = (sys.executable, "-m", "conveyor.runner.main")
#: The same, with a parent process between this test and the worker (the test keeps the pipes).
VIA_PARENT_ARGV = (
    sys.executable, "-c", f"import subprocess; subprocess.run({list(WORKER_ARGV)!r})"
)  # fmt: skip


class Container:
    """One worker process and its two frame pipes."""

    def __init__(
        self, code_root: Path, handler: str, argv: Sequence[str] = WORKER_ARGV, **config: Any
    ) -> None:
        self.stderr_path = code_root / f"stderr-{next(_serial)}.log"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=code_root,
        )
        self.fence = 0
        #: (task id or None, stream, text) of every line the process wrote, in order.
        self.lines: list[tuple[str | None, int, str]] = []
        self.send(
            {
                "op": "init",
                "config": QueueConfig(name="q", handler=handler, **config).to_dict(),
                "code_root": str(code_root),
                "stub_id": "stub-1",
                "stub_type": "taskqueue/serve",
                "container_id": "taskqueue-stub1-0000abcd",
            }
        )

    @property
    def stdin(self) -> IO[bytes]:
        assert self.proc.stdin is not None
        return self.proc.stdin

    def send(self, message: dict[str, Any]) -> None:
        wire.write_frame(self.stdin, message)

    def receive(self) -> dict[str, Any]:
        """The next frame but ``log`` frames, whose lines go to ``self.lines``."""
        assert self.proc.stdout is not None
        while True:
            message = wire.read_frame(self.proc.stdout)
            assert message is not None, f"worker closed its pipe: {self.stderr()}"
            if message["op"] != "log":
                return message
            self.lines += [(message["task_id"], s, text) for s, _, text in message["lines"]]

    def run(self, *args: Any, callback_url: str | None = None, **kwargs: Any) -> dict[str, Any]:
        """Run one task; check its ``started`` frame and return its ``done`` frame."""
        task_id = self.begin(*args, callback_url=callback_url, **kwargs)
        done = self.receive()
        assert done["op"] == "done"
        assert (done["task_id"], done["fence"]) == (task_id, self.fence)
        return done

    def begin(self, *args: Any, callback_url: str | None = None, **kwargs: Any) -> str:
        """Hand over one task and check its ``started`` frame; return the task's id."""
        self.fence += 1
        task_id = f"task-{self.fence}"
        before = time.time()
        self.send(
            {
                "op": "run",
                "task_id": task_id,
                "fence": self.fence,
                "attempt": 2,
                "payload": orjson.dumps({"args": list(args), "kwargs": kwargs}).decode(),
                "callback_url": callback_url,
                "timeout": 30.0,
            }
        )
        started = self.receive()
        assert started["op"] == "started"
        assert (started["task_id"], started["fence"]) == (task_id, self.fence)
        assert before - 1 <= started["at"] <= time.time() + 1
        return task_id

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def close(self) -> int:
        if self.proc.poll() is None:
            self.stdin.close()
        code = self.proc.wait(timeout=30)
        self._stderr.close()
        return code


@pytest.fixture
def code_root(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(textwrap.dedent(HANDLERS))
    (tmp_path / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    return tmp_path


@pytest.fixture
def start(code_root: Path) -> Iterator[Any]:
    started: list[Container] = []

    def start_container(handler: str, **config: Any) -> Container:
        container = Container(code_root, handler, **config)
        started.append(container)
        return container

    yield start_container
    for container in started:
        if container.proc.poll() is None:
            container.proc.kill()
        container.close()


def ready(container: Container) -> None:
    message = container.receive()
    assert message == {"op": "ready", "pid": container.proc.pid}, container.stderr()


def test_init_run_and_stop(start: Any) -> None:
    worker = start("app.py:add")
    ready(worker)
    done = worker.run(2, y=3)
    assert done["status"] == "COMPLETE"
    assert orjson.loads(done["result"]) == 5
    assert (done["error"], done["retryable"], done["outputs"]) == (None, False, [])
    # The same process runs task after task.
    assert orjson.loads(worker.run(10)["result"]) == 10
    worker.send({"op": "stop"})
    assert worker.close() == 0


def test_end_of_input_exits_cleanly(start: Any) -> None:
    worker = start("app.py:add")
    ready(worker)
    assert worker.close() == 0


def test_args_and_kwargs_reach_the_handler(start: Any) -> None:
    worker = start("app.py:echo")
    ready(worker)
    done = worker.run(1, "two", [3], flag=True, name="x")
    assert orjson.loads(done["result"]) == {
        "args": [1, "two", [3]],
        "kwargs": {"flag": True, "name": "x"},
    }


def test_callback_url_only_for_handlers_that_take_it(start: Any) -> None:
    echo = start("app.py:echo")  # **kwargs: gets callback_url only when there is one
    ready(echo)
    with_cb = orjson.loads(echo.run(1, callback_url="https://example.com/cb")["result"])
    assert with_cb["kwargs"] == {"callback_url": "https://example.com/cb"}
    assert orjson.loads(echo.run(1)["result"])["kwargs"] == {}
    named = start("app.py:wants_callback")
    ready(named)
    assert orjson.loads(named.run(1, callback_url="https://x.test/")["result"]) == "https://x.test/"
    add = start("app.py:add")  # neither: never gets it
    ready(add)
    assert add.run(1, callback_url="https://x.test/")["status"] == "COMPLETE"


def test_exception_is_failed_with_traceback(start: Any) -> None:
    worker = start("app.py:fail", retry_for=("app.Transient",))
    ready(worker)
    done = worker.run("other")
    assert done["status"] == "FAILED"
    assert done["result"] is None
    assert done["retryable"] is False
    error = done["error"]
    assert error["type"] == "ValueError"
    assert error["message"] == "bad input"
    assert 'raise ValueError("bad input")' in error["traceback"]
    assert "conveyor/runner/main.py" not in error["traceback"]
    # A subclass of a retry_for class is retryable.
    flaky = worker.run("flaky")
    assert flaky["status"] == "FAILED"
    assert flaky["retryable"] is True
    assert flaky["error"]["type"] == "app.Flaky"
    # The process survives failures.
    assert worker.run("other")["status"] == "FAILED"


def test_decorated_retry_for_matches_whatever_the_configured_module_name(start: Any) -> None:
    # A deploy may have imported the file under another module name; the classes still match.
    worker = start("app.py:decorated_fail", retry_for=("conveyor_user_0123.Transient",))
    ready(worker)
    done = worker.run()
    assert done["retryable"] is True
    assert done["error"]["message"] == "decorated"


def test_without_retry_for_nothing_is_retryable(start: Any) -> None:
    worker = start("app.py:fail")
    ready(worker)
    assert worker.run("flaky")["retryable"] is False


def test_bytes_result_is_base64(start: Any) -> None:
    worker = start("app.py:raw")
    ready(worker)
    result = orjson.loads(worker.run()["result"])
    assert base64.b64decode(result["base64"]) == b"\x00\xffbytes"


def test_nested_bytes_are_base64(start: Any) -> None:
    worker = start("app.py:nested_bytes")
    ready(worker)
    assert orjson.loads(worker.run()["result"]) == {"blob": {"base64": "YWI="}}


def test_result_that_is_not_json_fails(start: Any) -> None:
    worker = start("app.py:not_json")
    ready(worker)
    done = worker.run()
    assert done["status"] == "FAILED"
    assert done["error"]["type"] == "TypeError"
    assert "not JSON-serialisable" in done["error"]["message"]
    assert done["retryable"] is False


def test_async_handler_runs_on_one_loop(start: Any) -> None:
    worker = start("app.py:slow_add")
    ready(worker)
    first = orjson.loads(worker.run(1, 2)["result"])
    second = orjson.loads(worker.run(3, 4)["result"])
    assert (first["sum"], second["sum"]) == (3, 7)
    assert first["loop"] == second["loop"]


def test_async_handler_failure_has_a_clean_traceback(start: Any) -> None:
    worker = start("app.py:async_fail")
    ready(worker)
    done = worker.run()
    assert done["status"] == "FAILED"
    assert done["error"]["type"] == "KeyError"
    assert "in async_fail" in done["error"]["traceback"]
    assert "base_events" not in done["error"]["traceback"]


def test_context_and_on_start_value(start: Any) -> None:
    worker = start("app.py:with_context", timeout=45)
    ready(worker)
    done = worker.run(callback_url="https://example.com/cb")
    context = orjson.loads(done["result"])
    assert context == {
        "task_id": "task-1",
        "attempt": 2,
        "container_id": "taskqueue-stub1-0000abcd",
        "stub_id": "stub-1",
        "stub_type": "taskqueue/serve",
        "callback_url": "https://example.com/cb",
        "timeout": 30.0,
        "on_start_value": {"model": "loaded", "pid": worker.proc.pid},
    }


def test_handler_output_does_not_corrupt_frames(start: Any) -> None:
    worker = start("app.py:noisy")
    ready(worker)
    assert orjson.loads(worker.run(21)["result"]) == 42
    assert orjson.loads(worker.run(1)["result"]) == 2
    worker.send({"op": "stop"})
    assert worker.close() == 0
    # Every line is the task's that wrote it, in order, each before the task's done (the
    # unfinished last one too); nothing reaches the process's own stderr.
    for n, task_id in ((21, "task-1"), (1, "task-2")):
        assert [line for line in worker.lines if line[0] == task_id] == [
            (task_id, 1, f"print is caught {n}"),
            (task_id, 1, "so is sys.stdout"),
            (task_id, 1, "and raw fd 1 writes"),
            (task_id, 2, "stderr too, no newline"),
        ]
    assert "caught" not in worker.stderr()


def test_outputs_are_sent_with_the_result(start: Any, tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "f1.txt").write_text("one")
    worker = start("app.py:saves")
    ready(worker)
    done = worker.run(str(folder))
    assert done["status"] == "COMPLETE"
    names = [item["name"] for item in done["outputs"]]
    assert names == ["note.txt", "frames.zip"]
    assert base64.b64decode(done["outputs"][0]["data"]) == b"hello"
    archive = zipfile.ZipFile(io.BytesIO(base64.b64decode(done["outputs"][1]["data"])))
    assert archive.read("f1.txt") == b"one"
    # Each task starts with an empty collector.
    again = worker.run(str(folder))
    assert [item["name"] for item in again["outputs"]] == ["note.txt", "frames.zip"]


def test_outputs_of_a_failed_task_are_sent_too(start: Any) -> None:
    worker = start("app.py:saves_then_fails")
    ready(worker)
    done = worker.run()
    assert done["status"] == "FAILED"
    assert [item["name"] for item in done["outputs"]] == ["partial.txt"]


@pytest.mark.parametrize(
    ("handler", "type_", "message"),
    [
        ("app.py:missing", "ImportError", "no attribute 'missing'"),
        ("nope.py:f", "ImportError", "does not exist"),
        ("app.py", "ImportError", "must look like"),
    ],
)
def test_init_failed(start: Any, handler: str, type_: str, message: str) -> None:
    worker = start(handler)
    reply = worker.receive()
    assert reply["op"] == "init_failed"
    assert reply["error"]["type"] == type_
    assert message in reply["error"]["message"]
    assert worker.close() != 0


def test_init_failed_when_on_start_raises(code_root: Path, start: Any) -> None:
    (code_root / "broken.py").write_text(
        "from conveyor import task_queue\n"
        "def warm():\n    raise RuntimeError('no model')\n"
        "@task_queue(on_start=warm)\ndef f():\n    return 1\n"
    )
    worker = start("broken.py:f")
    reply = worker.receive()
    assert reply["op"] == "init_failed"
    assert reply["error"]["type"] == "RuntimeError"
    assert "no model" in reply["error"]["traceback"]
    assert worker.close() != 0


def test_init_failed_when_import_raises(code_root: Path, start: Any) -> None:
    (code_root / "bad_import.py").write_text("import does_not_exist_anywhere\n")
    worker = start("bad_import.py:f")
    reply = worker.receive()
    assert reply["op"] == "init_failed"
    assert reply["error"]["type"] == "ModuleNotFoundError"
    assert worker.close() != 0


def test_handler_in_a_subpackage_with_relative_import(code_root: Path, start: Any) -> None:
    pkg = code_root / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "util.py").write_text("FACTOR = 3\n")
    (pkg / "jobs.py").write_text(
        "from .util import FACTOR\n"
        "class Oops(Exception):\n    pass\n"
        "def times(x):\n    return x * FACTOR\n"
        "def oops():\n    raise Oops('x')\n"
    )
    worker = start("pkg/jobs.py:times")
    ready(worker)
    assert orjson.loads(worker.run(5)["result"]) == 15
    failing = start("pkg/jobs.py:oops", retry_for=("pkg.jobs.Oops",))
    ready(failing)
    done = failing.run()
    assert done["error"]["type"] == "pkg.jobs.Oops"
    assert done["retryable"] is True


def test_many_small_tasks_are_fast(start: Any) -> None:
    # The per-task path is benchmarked; this only guards against gross slowdowns.
    worker = start("app.py:add")
    ready(worker)
    count = 2000
    began = time.perf_counter()
    for fence in range(1, count + 1):
        worker.send(
            {
                "op": "run",
                "task_id": f"t{fence}",
                "fence": fence,
                "attempt": 1,
                "payload": '{"args":[1],"kwargs":{}}',
                "callback_url": None,
                "timeout": -1,
            }
        )
        assert worker.receive()["op"] == "started"
        assert worker.receive()["status"] == "COMPLETE"
    elapsed = time.perf_counter() - began
    assert elapsed < 20, f"{count} tasks took {elapsed:.1f}s"


def test_a_first_frame_other_than_init_is_refused(code_root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor.runner.main"],
        input=wire.encode({"op": "run", "task_id": "t"}),
        capture_output=True,
        cwd=code_root,
        timeout=30,
    )
    assert proc.returncode != 0
    assert proc.stdout == b""
    assert b"expected an init frame" in proc.stderr


# A worker process dies with its agent (DESIGN A13), whatever killed the agent.


async def test_the_end_of_stdin_ends_a_running_handler(start: Any, tmp_path: Path) -> None:
    ticks = tmp_path / "ticks"
    worker = start("app.py:ticking")
    ready(worker)
    worker.begin(str(ticks))  # 60 s of ticks
    await until(ticks.exists)
    worker.stdin.close()  # what the agent's death looks like from here
    await until(lambda: worker.proc.poll() is not None, 10)
    assert worker.proc.poll() == 0, "the handler went on after its agent was gone"
    assert "end" not in ticks.read_text()
    assert "Traceback" not in worker.stderr()


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
async def test_the_kernel_kills_a_worker_whose_parent_died(start: Any, tmp_path: Path) -> None:
    # This test holds both pipes open, so only the parent-death signal can end the worker.
    ticks = tmp_path / "ticks"
    worker = start("app.py:ticking", argv=VIA_PARENT_ARGV)
    pid = worker.receive()["pid"]
    assert psutil.Process(pid).ppid() == worker.proc.pid
    worker.begin(str(ticks))
    await until(ticks.exists)
    worker.proc.kill()  # the parent alone, as the OOM killer does
    await until(lambda: not pid_alive(pid), 10)
    assert not pid_alive(pid), "the worker outlived its parent"
    assert "end" not in ticks.read_text()


def test_a_worker_orphaned_before_it_started_exits(code_root: Path) -> None:
    # Its spawner died while Python started: its parent is not the pid the spawner gave.
    env = {**os.environ, wire.AGENT_PID_ENV: str(os.getpid() + 1)}
    proc = subprocess.Popen(
        WORKER_ARGV, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=code_root, env=env
    )
    try:
        code = proc.wait(timeout=30)  # not waiting for an init frame that never comes
    finally:
        proc.kill()
        out, _ = proc.communicate()
    assert (code, out) == (0, b"")


def test_a_worker_whose_results_have_no_reader_exits_quietly(start: Any, tmp_path: Path) -> None:
    worker = start("app.py:ticking")
    ready(worker)
    worker.begin(str(tmp_path / "ticks"), seconds=1.0)
    assert worker.proc.stdout is not None
    worker.proc.stdout.close()  # the reader died; its stdin is still open
    assert worker.proc.wait(timeout=30) == 0
    assert "Traceback" not in worker.stderr()


@pytest.mark.parametrize(
    ("frames", "code", "says"),
    [
        (b"\x00\x00\x00\x03abc", EXIT_PROTOCOL, b"bad frame from the agent"),
        # The agent died in the middle of a frame: that is the end of the pipe, not an error.
        (b"\x00\x00\x00\x10abc", EXIT_OK, b""),
    ],
)
def test_a_bad_frame_is_refused_in_words(
    code_root: Path, frames: bytes, code: int, says: bytes
) -> None:
    proc = subprocess.run(WORKER_ARGV, input=frames, capture_output=True, cwd=code_root, timeout=30)
    assert proc.returncode == code
    assert says in proc.stderr
    assert b"Traceback" not in proc.stderr
