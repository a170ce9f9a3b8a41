"""``put``, ``task list|get|stop|wait`` and ``queue list`` against a real ``conveyor serve``."""

from __future__ import annotations

import json
import re

import httpx

from conveyor.tasks import TaskStatus
from tests.cli.conftest import Server, one_error_line, task_failure_line

RUNNING = {TaskStatus.RUNNING}


def test_put_prints_the_task_id(server: Server) -> None:
    result = server.cli("put", "fast", '{"x": 2}')
    assert result.returncode == 0, result.stderr
    task_id = result.stdout.strip()
    assert server.task(task_id)["deployment"]["name"] == "fast"


def test_put_wait_prints_the_final_status_then_the_result(server: Server) -> None:
    result = server.cli("put", "fast", '{"x": 21}', "--wait", "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"x": 21, "double": 42}
    task_id = result.stderr.split()[1]
    assert re.fullmatch(rf"task {task_id} COMPLETE in \d+\.\d s", result.stderr.splitlines()[-1])


def test_put_wait_on_a_failing_task_exits_non_zero(server: Server) -> None:
    result = server.cli("put", "failing", '{"message": "bad input"}', "--wait")
    line = task_failure_line(result)
    assert result.returncode == 1
    assert "FAILED" in line and "ValueError: bad input" in line
    assert result.stdout == ""


def test_put_wait_timeout_exits_2(server: Server) -> None:
    result = server.cli("put", "slow", '{"seconds": 60}', "--wait", "--timeout", "0.5")
    assert result.returncode == 2
    assert "still PENDING" in task_failure_line(result) or "still RUNNING" in result.stderr
    server.cli("task", "stop", result.stderr.split("task ")[1].split()[0])


def test_put_with_a_bad_json_argument_is_one_error_line(server: Server) -> None:
    for body in ('{"x": ', "[1, 2]"):
        assert "JSON" in one_error_line(server.cli("put", "fast", body))


def test_task_list_json_is_the_api_list_and_filters(server: Server) -> None:
    server.wait_status(server.put("fast", {"x": 1}), set())
    failed_id = server.put("failing")
    server.wait_status(failed_id, set())

    listed = server.cli("task", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    tasks = json.loads(listed.stdout)
    with server.http() as http:
        assert tasks == http.get("/v2/task/").json()["data"]
    assert failed_id in {t["id"] for t in tasks}

    errors = json.loads(server.cli("task", "list", "--status", "error", "--format", "json").stdout)
    assert failed_id in {t["id"] for t in errors}
    assert {t["status"] for t in errors} == {"FAILED"}

    mixed = server.cli("task", "list", "--status", "Complete,failed", "--queue", "fast",
                       "--format", "json")
    fast = json.loads(mixed.stdout)
    assert fast and {t["deployment"]["name"] for t in fast} == {"fast"}
    assert {t["status"] for t in fast} == {"COMPLETE"}

    one = json.loads(server.cli("task", "list", "--limit", "1", "--format", "json").stdout)
    assert len(one) == 1


def test_task_list_table_and_bad_filters(server: Server) -> None:
    failed_id = server.put("failing")
    server.wait_status(failed_id, set())
    table = server.cli("task", "list", "--queue", "failing")
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith(failed_id))
    assert "FAILED" in row and "failing" in row
    assert table.stdout.splitlines()[0].split()[:3] == ["id", "status", "queue"]
    assert "task" in table.stdout.splitlines()[-1]  # the count line

    assert "unknown status" in one_error_line(server.cli("task", "list", "--status", "done"))
    assert "--limit" in one_error_line(server.cli("task", "list", "--limit", "1001"))
    assert "--limit" in one_error_line(server.cli("task", "list", "--limit", "0"))


def test_task_get_json_equals_the_http_answer(server: Server) -> None:
    task_id = server.put("failing", {"message": "for get"})
    server.wait_status(task_id, set())
    result = server.cli("task", "get", task_id, "--format", "json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    expected = server.task(task_id)
    # Live figures of the queue may move between the two reads; the task itself may not.
    assert shown.pop("stats").keys() == expected.pop("stats").keys()
    assert shown == expected
    assert shown["error"]["traceback"]


def test_task_get_panel_shows_fields_result_and_error(server: Server) -> None:
    task_id = server.put("failing", {"message": "shown in panel"})
    server.wait_status(task_id, set())
    panel = server.cli("task", "get", task_id).stdout
    for text in (task_id, "FAILED", "failing v1", "attempts", "ValueError: shown in panel",
                 "Traceback", "container"):
        assert text in panel


def test_task_get_prints_output_urls_whole_on_a_narrow_screen(server: Server) -> None:
    task_id = server.put("saving", {"name": "a-rather-long-report-name.txt"})
    assert server.wait_status(task_id, set()) == "COMPLETE"
    panel = server.cli("task", "get", task_id, env={**server.env, "COLUMNS": "80"})
    assert panel.returncode == 0, panel.stderr
    assert max(len(line) for line in panel.stdout.splitlines()[:-2]) <= 80  # the box fits
    (url,) = re.findall(r"http://\S+", panel.stdout)
    assert url.startswith(f"{server.url}/v2/output/") and "&signature=" in url
    assert httpx.get(url).content == b"saved"  # copied from the screen, it downloads


def test_task_get_unknown_id_is_one_error_line(server: Server) -> None:
    line = one_error_line(server.cli("task", "get", "7e0d0a4c-0000-4000-8000-000000000000"))
    assert "404" in line


def test_task_stop_by_ids_and_from_a_pipe(server: Server) -> None:
    running = server.put("slow", {"seconds": 60})
    assert server.wait_status(running, RUNNING) == "RUNNING"
    pending = [server.put("slow", {"seconds": 60}) for _ in range(2)]
    assert {server.task(i)["status"] for i in pending} == {"PENDING"}

    by_arg = server.cli("task", "stop", running)
    assert by_arg.returncode == 0, by_arg.stderr
    assert by_arg.stdout.split() == [running, "cancelled"]

    piped = server.cli("task", "stop", "-", stdin=f"{pending[0]}\n  {pending[1]}\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines() == [f"{i}  cancelled" for i in pending]
    for task_id in [running, *pending]:
        assert server.task(task_id)["status"] == "CANCELLED"

    again = server.cli("task", "stop", "-", stdin=f"{running} not-a-task")
    assert again.returncode == 1
    assert again.stdout.splitlines() == [f"{running}  already finished", "not-a-task  not found"]


def test_task_stop_and_wait_of_no_ids_on_stdin_do_nothing(server: Server) -> None:
    for command, said in (("stop", "nothing to stop"), ("wait", "nothing to wait for")):
        result = server.cli("task", command, "-", stdin="\n")
        assert result.returncode == 0, result.stderr
        assert result.stdout == "" and said in result.stderr


def test_task_list_of_an_unknown_queue_names_the_known_ones(server: Server) -> None:
    result = server.cli("task", "list", "--queue", "fsat")
    line = one_error_line(result)
    assert result.returncode == 1
    assert "unknown queue 'fsat'" in line
    assert all(name in line for name in ("fast", "slow", "failing"))


def test_task_wait_exit_codes(server: Server) -> None:
    good = [server.put("fast", {"x": i}) for i in range(3)]
    all_complete = server.cli("task", "wait", *good, "--timeout", "30")
    assert all_complete.returncode == 0, all_complete.stderr
    assert all_complete.stdout.splitlines() == [f"{i}  COMPLETE" for i in good]

    bad = server.put("failing")
    one_failed = server.cli("task", "wait", "-", stdin=" ".join([*good, bad]))
    assert one_failed.returncode == 1
    assert f"{bad}  FAILED  ValueError: boom" in one_failed.stdout.splitlines()

    slow = server.put("slow", {"seconds": 60})
    too_long = server.cli("task", "wait", good[0], slow, "--timeout", "1")
    assert too_long.returncode == 2
    assert "error:" in too_long.stderr and "Traceback" not in too_long.stderr
    server.cli("task", "stop", slow)


def test_queue_list(server: Server) -> None:
    server.wait_status(server.put("failing"), set())
    result = server.cli("queue", "list", "--format", "json")
    assert result.returncode == 0, result.stderr
    queues = {q["name"]: q for q in json.loads(result.stdout)}
    assert set(queues) >= {"fast", "slow", "failing"}
    failing = queues["failing"]
    assert failing["counts"]["FAILED"] >= 1
    assert [v["version"] for v in failing["versions"]] == [1]
    assert {"queue_depth", "active_containers"} <= failing.keys()

    table = server.cli("queue", "list").stdout
    row = next(line for line in table.splitlines() if line.startswith("failing"))
    assert "v1" in row and "FAILED" in row
