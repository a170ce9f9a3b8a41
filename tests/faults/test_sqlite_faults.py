"""SQLite under faults: ``conveyor serve`` (gateway + agent in one process) on one file, its
worker processes SIGKILLed and the whole process SIGKILLed and restarted on the same file."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest

from tests.faults.chaos import Rig
from tests.faults.cluster import CallbackReceiver, Proc, conveyor_argv, free_port, processes
from tests.faults.conftest import task_count
from tests.faults.scenario import Load, run
from tests.faults.workload import HANDLER_SOURCE, Accepted, queue_options

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(900)]

FAULTS = (
    "kill_worker",
    "kill_worker",
    "kill_worker",
    "kill_serve",
    "kill_worker",
    "kill_serve",
    "kill_serve_alone",
)


def test_sqlite_serve_under_faults(tmp_path: Path, seed: int) -> None:
    load = Load(task_count(5000), 50.0, FAULTS)
    app = tmp_path / "app"
    app.mkdir()
    (app / "tasks.py").write_text(HANDLER_SOURCE)
    url = f"sqlite:///{tmp_path}/store/conveyor.db"
    ledger = tmp_path / "fault-ledger" / "ledger.jsonl"  # its folder is bound into sandboxes
    ledger.parent.mkdir()
    token = "cv_" + secrets.token_urlsafe(24)
    port = free_port()
    env = {
        **os.environ,
        "FAULT_LEDGER": str(ledger),
        "FAULT_QUEUE_OPTIONS": json.dumps(queue_options(load.tasks)),
    }
    serve = Proc(
        "serve",
        conveyor_argv(
            "serve",
            str(app / "tasks.py") + ":handler",
            "--store",
            url,
            "--port",
            str(port),
            "--token",
            token,
        ),
        tmp_path / "serve",
        env,
        url=f"http://127.0.0.1:{port}",
        sandbox_binds=[ledger.parent],
    )
    with processes([serve]), CallbackReceiver() as receiver:
        serve.start()
        rig = Rig([serve], [serve], ledger, token, receiver.url, Accepted(), [])
        report = run("SQLite, conveyor serve", seed, load, rig, receiver, url)
    assert not report.violations, "\n".join(report.violations[:20])
    assert report.lost == 0 and report.duplicate_completes == 0
    assert report.callbacks_missing == 0
    assert rig.faults["kill_serve"] > 0
    assert rig.faults["kill_serve_alone"] == 1
