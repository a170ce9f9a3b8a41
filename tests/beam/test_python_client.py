"""Beam's Python client (``beta9.client.client.Client``, PyPI ``beta9``), unchanged, in its own
virtual environment, against a real ``conveyor serve`` (DESIGN A12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.beam.conftest import Gateway, python_client

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CLIENT = """
    import json, os
    from beta9.client.client import Client

    client = Client(token=os.environ["TOKEN"], api_url=os.environ["URL"])
"""


def test_submit_to_a_served_stub_and_read_the_task(
    beta9_python: Path, gateway: Gateway
) -> None:
    answer = python_client(beta9_python, gateway, CLIENT + """
    deployment = client.get_deployment_by_stub_id(os.environ["STUB"])
    task = deployment.submit(input={"x": 21})
    first = str(task.status())
    result = task.result(wait=True)
    again = client.get_task_by_id(task.id)
    print(json.dumps({
        "workspace": client.workspace_id, "url": deployment.url, "first": first,
        "result": result, "status": str(task.status()), "complete": task.is_complete(),
        "outputs": task.outputs(), "again": [again.id, str(again.status()), again.result()],
    }))
    """, STUB=gateway.stubs["fast"])
    assert answer["workspace"] == gateway.workspace_id
    assert answer["url"] == f"{gateway.url}/taskqueue/id/{gateway.stubs['fast']}"
    assert answer["first"] in ("PENDING", "RUNNING", "COMPLETE")
    assert answer["result"] == {"x": 21, "double": 42}
    assert answer["status"] == "COMPLETE" and answer["complete"] is True
    assert answer["outputs"] == []
    task_id = answer["again"][0]
    assert answer["again"] == [task_id, "COMPLETE", {"x": 21, "double": 42}]
    assert gateway.task(task_id)["result"] == {"x": 21, "double": 42}


def test_a_deployed_version_by_id_and_its_subscribe_stream(
    beta9_python: Path, gateway: Gateway
) -> None:
    answer = python_client(beta9_python, gateway, CLIENT + """
    deployment = client.get_deployment_by_id(os.environ["DEPLOYMENT"])
    seen = []
    result = deployment.subscribe(input={"x": 5}, event_handler=seen.append)
    print(json.dumps({"url": deployment.url, "result": result,
                      "statuses": [event["status"] for event in seen],
                      "last": {key: seen[-1][key] for key in ("id", "external_id", "deployment")}}))
    """, DEPLOYMENT=gateway.stubs["fast v2"])
    assert answer["url"] == f"{gateway.url}/taskqueue/fast/v2"
    assert answer["result"] == {"x": 5, "double": 10}
    assert answer["statuses"][-1] == "COMPLETE"
    assert set(answer["statuses"]) <= {"PENDING", "RUNNING", "COMPLETE"}
    last = answer["last"]
    assert last["id"] == last["external_id"]
    assert last["deployment"] == {"id": gateway.stubs["fast v2"], "name": "fast", "version": 2}
    assert gateway.task(last["id"])["deployment"] == {"name": "fast", "version": 2}


def test_bytes_and_outputs(beta9_python: Path, gateway: Gateway) -> None:
    answer = python_client(beta9_python, gateway, CLIENT + """
    import requests

    task = client.get_deployment_by_stub_id(os.environ["STUB"]).submit(input={"text": "h\\u00e9"})
    result = task.result(wait=True)
    [output] = task.outputs()
    print(json.dumps({"bytes": isinstance(result, bytes), "text": result.decode(),
                      "name": output["name"], "file": requests.get(output["url"]).text}))
    """, STUB=gateway.stubs["blob"])
    assert answer == {"bytes": True, "text": "hé", "name": "echo.txt", "file": "hé"}


def test_a_failed_task_reads_as_error(beta9_python: Path, gateway: Gateway) -> None:
    answer = python_client(beta9_python, gateway, CLIENT + """
    from beta9.type import TaskStatus

    task = client.get_deployment_by_stub_id(os.environ["STUB"]).submit(input={"message": "no"})
    result = task.result(wait=True)
    status = task.status()
    print(json.dumps({"id": task.id, "result": result, "error": status == TaskStatus.Error,
                      "status": str(status), "complete": task.is_complete()}))
    """, STUB=gateway.stubs["failing"])
    assert answer["result"] is None and answer["error"] is True
    assert answer["status"] == "ERROR" and answer["complete"] is True
    assert gateway.task(answer["id"])["status"] == "FAILED"


def test_another_workspace_gets_the_clients_not_found(
    beta9_python: Path, gateway: Gateway
) -> None:
    task_id = gateway.put("fast", {"x": 1})
    answer = python_client(beta9_python, gateway, """
    import json, os
    from beta9.client.client import Client
    from beta9.exceptions import DeploymentNotFoundError, StubNotFoundError, TaskNotFoundError

    client = Client(token=os.environ["STRANGER"], api_url=os.environ["URL"])
    caught = []
    for call, kind in (
        (lambda: client.get_task_by_id(os.environ["TASK"]), TaskNotFoundError),
        (lambda: client.get_deployment_by_stub_id(os.environ["STUB"]), StubNotFoundError),
        (lambda: client.get_deployment_by_id(os.environ["STUB"]), DeploymentNotFoundError),
    ):
        try:
            call()
            caught.append(None)
        except kind as exc:
            caught.append(type(exc).__name__)
    print(json.dumps({"workspace": client.workspace_id, "caught": caught}))
    """, STRANGER=gateway.stranger, TASK=task_id, STUB=gateway.stubs["fast"])
    assert answer["caught"] == ["TaskNotFoundError", "StubNotFoundError",
                                "DeploymentNotFoundError"]
    assert answer["workspace"] != gateway.workspace_id
