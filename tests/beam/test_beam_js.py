"""Beam's TypeScript SDK (``@beamcloud/beam-js``, npm), unchanged, under node against a real
``conveyor serve`` (DESIGN A12): the workspace, the deployment listing, and the task
resource's ``get``, ``refresh``, ``list`` and ``cancel``."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.tasks import TaskStatus
from tests.beam.conftest import Gateway, node_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

#: beam-js set up as its README says; the workspace id is the one ``_getWorkspace`` answers.
SETUP = """
    const beam = require("@beamcloud/beam-js");
    const tasks = require("@beamcloud/beam-js/lib/resources/task").default;
    const { beamOpts, Deployments } = beam;
    beamOpts.token = process.env.TOKEN;
    beamOpts.gatewayUrl = process.env.URL;
    beamOpts.workspaceId = "set-below";  // every request needs one, _getWorkspace included
    const workspace = await beam.default._getWorkspace();
    beamOpts.workspaceId = workspace.external_id;
"""


def test_workspace_and_deployments(beam_js: Path, gateway: Gateway) -> None:
    answer = node_client(beam_js, gateway, SETUP + """
    const all = await Deployments.list();
    const fast = await Deployments.list({ stubType: "taskqueue/deployment", name: "fast" });
    const one = await Deployments.get({ id: fast[0].data.id });
    out({
      workspace: workspace.external_id,
      all: all.map((d) => [d.data.name, d.data.version, d.data.stub_type]),
      fast: fast.map((d) => [d.data.id, d.data.version, d.data.active, d.data.url,
                             d.data.createdAt === undefined && d.data.created_at instanceof Date]),
      one: [one.data.id, one.data.stub.id, one.data.stub.type],
    });
    """)
    assert answer["workspace"] == gateway.workspace_id
    assert sorted(answer["all"]) == sorted([
        ["fast", 1, "taskqueue/serve"], ["fast", 2, "taskqueue/deployment"],
        ["slow", 1, "taskqueue/serve"], ["failing", 1, "taskqueue/serve"],
        ["blob", 1, "taskqueue/serve"], ["square", 1, "taskqueue/serve"],
    ])
    v2 = gateway.stubs["fast v2"]
    assert answer["fast"] == [[v2, 2, True, f"{gateway.url}/taskqueue/fast/v2", True]]
    assert answer["one"] == [v2, v2, "taskqueue/deployment"]


def test_get_refresh_list_and_a_failed_task(beam_js: Path, gateway: Gateway) -> None:
    done = gateway.put("fast", {"x": 3})
    failed = gateway.put("failing", {"message": "broken"})
    for task_id in (done, failed):
        gateway.server.wait_status(task_id, {TaskStatus.COMPLETE, TaskStatus.FAILED})
    answer = node_client(beam_js, gateway, SETUP + """
    const done = await tasks.get({ id: process.env.DONE });
    const failed = await tasks.get({ id: process.env.FAILED });
    await failed.refresh();
    const newest = await tasks.list({ limit: 2 });
    const errors = await tasks.list({ status: "ERROR", stubNames: "failing" });
    out({
      done: [done.data.id, done.data.status, done.data.result, done.data.ended_at instanceof Date],
      failed: [failed.data.id, failed.data.status, failed.data.failure_reason],
      newest: newest.map((t) => t.data.id),
      errors: errors.map((t) => [t.data.id, t.data.status]),
    });
    """, DONE=done, FAILED=failed)
    assert answer["done"] == [done, "COMPLETE", {"x": 3, "double": 6}, True]
    assert answer["failed"] == [failed, "ERROR", "ValueError: broken"]
    assert answer["newest"] == [failed, done]
    assert answer["errors"] == [[failed, "ERROR"]]


def test_cancel_a_running_task(beam_js: Path, gateway: Gateway) -> None:
    running = gateway.put("slow", {"seconds": 60})
    assert gateway.server.wait_status(running, {TaskStatus.RUNNING}) == "RUNNING"
    answer = node_client(beam_js, gateway, SETUP + """
    const task = await tasks.get({ id: process.env.RUNNING });
    const before = task.data.status;
    const answer = await task.cancel();
    await task.refresh();
    out({ before, answer: [answer.status, answer.data], after: task.data.status });
    """, RUNNING=running)
    assert answer == {"before": "RUNNING", "answer": [200, {}], "after": "CANCELLED"}
    assert gateway.task(running)["status"] == "CANCELLED"


def test_another_workspace_gets_the_clients_not_found(beam_js: Path, gateway: Gateway) -> None:
    task_id = gateway.put("slow", {"seconds": 60})
    answer = node_client(beam_js, gateway, SETUP + """
    let missing = null;
    try {
      await tasks.get({ id: process.env.TASK });
    } catch (error) {
      missing = error.message;
    }
    await tasks.cancel([process.env.TASK]);
    out({
      missing,
      tasks: (await tasks.list()).length,
      deployments: (await Deployments.list()).length,
    });
    """, TOKEN=gateway.stranger, TASK=task_id)
    assert answer == {"missing": "Task not found", "tasks": 0, "deployments": 0}
    assert gateway.task(task_id)["status"] in ("PENDING", "RUNNING")
    with gateway.server.http() as http:  # the owner's task lives on: end it here
        http.request("DELETE", "/v2/task/cancel/", json={"task_ids": [task_id]})
