"""``deployment list|stop|start|delete`` and ``task replay`` against a real ``conveyor serve``."""

from __future__ import annotations

import json
import time

from conveyor.tasks import TaskStatus
from tests.cli.conftest import Server, one_error_line

RUNNING = {TaskStatus.RUNNING}


def containers(server: Server, queue: str) -> int:
    with server.http() as http:
        count: int = http.get(f"/v2/taskqueue/{queue}").json()["active_containers"]
        return count


def test_list_shows_every_version_as_the_api_does(server: Server) -> None:
    table = server.cli("deployment", "list")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["queue", "version", "state", "kind", "agents", "created", "stub"]
    assert {row.split()[0] for row in rows} >= {"fast", "slow", "failing", "saving"}
    assert all(row.split()[1:5] == ["v1", "active", "served", "1"] for row in rows)
    listed = server.cli("deployment", "list", "--format", "json")
    with server.http() as http:
        assert json.loads(listed.stdout) == http.get("/v2/deployment/").json()["data"]


def test_a_stopped_version_refuses_tasks_and_stops_its_containers(server: Server) -> None:
    server.wait_status(server.put("fast", {"x": 1}), set())  # a warm container
    assert containers(server, "fast") == 1
    stopped = server.cli("deployment", "stop", "fast:v1")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith("fast v1  stopped  stub ")
    assert "version v1 of fast is stopped" in one_error_line(server.cli("put", "fast", "{}"))
    deadline = time.monotonic() + 10  # keep_warm_seconds=60, yet it goes at once
    while containers(server, "fast") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert containers(server, "fast") == 0
    listed = json.loads(server.cli("deployment", "list", "--format", "json").stdout)
    [fast] = [v for v in listed if v["name"] == "fast"]
    assert fast["active"] is False and fast["agents"] == 0
    stub_id = fast["stub_id"]
    started = server.cli("deployment", "start", stub_id)  # by stub id, too
    assert started.returncode == 0 and "started" in started.stdout
    result = server.cli("put", "fast", '{"x": 3}', "--wait", "--timeout", "30")
    assert result.returncode == 0, result.stderr


def test_delete_asks_first_and_is_refused_while_a_task_runs(server: Server) -> None:
    slow = server.put("slow", {"seconds": 60})
    server.wait_status(slow, RUNNING)
    busy = one_error_line(server.cli("deployment", "delete", "slow:v1", "--yes"))
    assert "409" in busy and "unfinished" in busy
    server.cli("task", "stop", slow)
    server.wait_status(slow, set())
    asked = server.cli("deployment", "delete", "slow:v1", stdin="n\n")
    assert asked.returncode == 1 and asked.stderr.endswith("nothing deleted\n"), asked.stderr
    assert server.task(slow)["status"] == "CANCELLED"  # nothing was deleted
    deleted = server.cli("deployment", "delete", "slow:v1", "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert "(1 task(s))" in deleted.stdout
    with server.http() as http:
        assert http.get(f"/v2/task/{slow}/").status_code == 404
    assert "unknown version v1 of queue 'slow'" in one_error_line(
        server.cli("deployment", "stop", "slow:v1"))


def test_replay_by_id_and_by_filter(server: Server) -> None:
    failed = server.put("failing", {"message": "again"})
    server.wait_status(failed, set())
    by_id = server.cli("task", "replay", failed)
    assert by_id.returncode == 0, by_id.stderr
    [again] = by_id.stdout.split()
    assert by_id.stderr.strip() == "replayed 1 task(s)"
    task = server.task(again)
    assert task["replay_of"] == failed and task["deployment"]["name"] == "failing"
    server.wait_status(again, set())
    with server.http() as http:
        inputs = [http.get(f"/v2/task/{i}/input").json() for i in (failed, again)]
    assert inputs[0] == inputs[1] == {"args": [], "kwargs": {"message": "again"}}
    by_filter = server.cli("task", "replay", "--status", "error", "--queue", "failing",
                           "--latest")
    assert by_filter.returncode == 0, by_filter.stderr
    made = by_filter.stdout.split()
    assert {server.task(i)["replay_of"] for i in made} >= {failed, again}
    assert "2" not in one_error_line(server.cli("task", "replay"))  # nothing to replay
    assert "404" in one_error_line(server.cli("task", "replay", "nope"))
    assert "not both" in one_error_line(server.cli("task", "replay", failed, "--queue", "x"))
