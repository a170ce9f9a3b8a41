"""``conveyor task logs`` and the insight of ``task get`` against a real ``conveyor serve``
whose handler prints: the lines come from the worker process's own stdout and stderr."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from conveyor.tasks import TaskStatus
from tests.cli.conftest import Server, one_error_line, start_server, stop_process

PRINTING = '''
    import sys
    import time

    from conveyor import task_queue


    @task_queue(name="chatty", keep_warm_seconds=60, max_retries=0)
    def chatty(lines: int = 3, pause: float = 0.0, fail: bool = False) -> int:
        for i in range(lines):
            print(f"out {i}", flush=True)
            print(f"err {i}", file=sys.stderr, flush=True)
            time.sleep(pause)
        if fail:
            raise ValueError("chatty failed")
        return lines
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("serve")
    (folder / "printing.py").write_text(textwrap.dedent(PRINTING))
    running = start_server(folder, ["printing.py:chatty"])
    yield running
    assert stop_process(running.process) == 0, running.log()


def printed(lines: int) -> list[str]:
    """What ``chatty`` prints, as ``task logs`` shows it."""
    return [text for i in range(lines) for text in (f"out {i}", f"[stderr] err {i}")]


def per_stream(text: str) -> tuple[list[str], list[str]]:
    """stdout and stderr lines apart: between the two streams the order is the reader's."""
    shown = text.splitlines()
    return ([x for x in shown if not x.startswith("[stderr]")],
            [x for x in shown if x.startswith("[stderr]")])


def test_follow_prints_the_lines_while_the_task_runs_and_exits_when_it_ends(
    server: Server,
) -> None:
    task_id = server.put("chatty", {"lines": 6, "pause": 0.3})
    assert server.wait_status(task_id, {TaskStatus.RUNNING}) == "RUNNING"
    started = time.monotonic()
    result = server.cli("task", "logs", task_id, "-f", timeout=60)
    assert result.returncode == 0, result.stderr
    assert server.task(task_id)["status"] == "COMPLETE"
    assert time.monotonic() - started < 30
    assert per_stream(result.stdout) == per_stream("\n".join(printed(6)))
    assert result.stderr == ""


def test_logs_of_an_ended_task_filters_and_json(server: Server) -> None:
    task_id = server.put("chatty", {"lines": 3, "fail": True})
    assert server.wait_status(task_id, set()) == "FAILED"
    everything = server.cli("task", "logs", task_id)
    assert everything.returncode == 0, everything.stderr
    assert per_stream(everything.stdout) == per_stream("\n".join(printed(3)))
    followed = server.cli("task", "logs", task_id, "--follow")
    assert followed.returncode == 0 and followed.stdout == everything.stdout

    stderr = server.cli("task", "logs", task_id, "--stream", "stderr")
    assert stderr.stdout.splitlines()[:3] == ["[stderr] err 0", "[stderr] err 1",
                                              "[stderr] err 2"]
    assert all(x.startswith("[stderr]") for x in stderr.stdout.splitlines())
    assert server.cli("task", "logs", task_id, "--attempt", "2").stdout == ""

    as_json = server.cli("task", "logs", task_id, "--format", "json", "--stream", "stdout")
    items = [json.loads(line) for line in as_json.stdout.splitlines()]
    with server.http() as http:
        api = http.get(f"/v2/task/{task_id}/logs?stream=stdout").json()["data"]
    assert items == api
    assert [x["line"] for x in items] == ["out 0", "out 1", "out 2"]
    assert {x["attempt"] for x in items} == {1}


def test_logs_refusals_are_one_error_line(server: Server) -> None:
    unknown = server.cli("task", "logs", "7e0d0a4c-0000-4000-8000-000000000000")
    assert "404" in one_error_line(unknown)
    followed = server.cli("task", "logs", "7e0d0a4c-0000-4000-8000-000000000000", "-f")
    assert "404" in one_error_line(followed)
    assert "--stream" in one_error_line(server.cli("task", "logs", "x", "--stream", "both"))
    assert "--attempt" in one_error_line(server.cli("task", "logs", "x", "--attempt", "0"))
    assert "Example: conveyor task logs" in server.cli("task", "logs", "--help").stdout


def test_ctrl_c_while_following_exits_130_quietly(server: Server) -> None:
    task_id = server.put("chatty", {"lines": 100, "pause": 0.5})
    assert server.wait_status(task_id, {TaskStatus.RUNNING}) == "RUNNING"
    follow = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "task", "logs", task_id, "-f"],
        cwd=server.folder, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        first = follow.stdout.readline()  # following: the first line came
        assert first in ("out 0\n", "[stderr] err 0\n")
        follow.send_signal(signal.SIGINT)
        _, err = follow.communicate(timeout=15)
    finally:
        if follow.poll() is None:
            follow.kill()
        server.cli("task", "stop", task_id)
    assert follow.returncode == 130
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_task_get_shows_input_attempts_and_the_last_lines(server: Server) -> None:
    task_id = server.put("chatty", {"lines": 15, "fail": True})
    assert server.wait_status(task_id, set()) == "FAILED"
    result = server.cli("task", "get", task_id)
    assert result.returncode == 0, result.stderr
    panel = result.stdout
    assert "input" in panel and '"lines": 15' in panel and '"fail": true' in panel
    attempts = panel[panel.index("attempts\n"):]
    row = next(line for line in attempts.splitlines() if line.strip().startswith("1 "))
    assert "FAILED" in row and "ValueError" in row
    assert "duration" in panel
    tail = panel[panel.index("log (last 20 lines)"):].splitlines()[1:21]
    shown = per_stream("\n".join(tail))
    assert shown[0][-1] == "out 14" and shown[1][-1] == "[stderr] err 14"
    assert len(tail) == 20 and "out 0" not in tail  # only the last 20 of 30
