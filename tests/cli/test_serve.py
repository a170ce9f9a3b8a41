"""What ``conveyor serve`` prints once it is ready."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.cli.conftest import start_server, stop_process


def test_the_curl_line_sends_the_handlers_own_parameters(tmp_path: Path) -> None:
    server = start_server(tmp_path, ["handlers.py:two_params"])  # two_params(a, b: str)
    try:
        (line,) = [line for line in server.log().splitlines() if "curl " in line]
        words = shlex.split(line)
        body = words[words.index("-d") + 1]
        assert body == '{"a":null,"b":""}'
        assert f"http://localhost:{server.port}/taskqueue/two_params" in words
        with server.http() as http:  # the body, sent as printed, is a call the handler takes
            task_id = http.post("/taskqueue/two_params", content=body).json()["task_id"]
        assert server.wait_status(task_id, set()) == "COMPLETE"
        assert server.task(task_id)["result"] == "None"
    finally:
        assert stop_process(server.process) == 0, server.log()
