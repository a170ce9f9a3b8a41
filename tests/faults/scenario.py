"""One fault run from start to report: load and chaos at once, then every check."""

from __future__ import annotations

import io
import random
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from tests.faults.chaos import Chaos, Rig, schedule
from tests.faults.cluster import CallbackReceiver
from tests.faults.conftest import publish
from tests.faults.verify import (
    Report,
    check,
    fetch,
    logged_errors,
    wait_callbacks,
    wait_terminal,
)
from tests.faults.workload import (
    HANDLER_SOURCE,
    QUEUE,
    Planned,
    hold_begins,
    plan,
    produce,
    read_ledger,
)


@dataclass
class Load:
    tasks: int
    seconds: float
    faults: Sequence[str]


def code_bundle() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tasks.py", HANDLER_SOURCE)
    return buffer.getvalue()


def deploy(gateway: str, token: str, config_json: str) -> None:
    """The queue through ``POST /v2/deployment/`` (multipart config + code bundle)."""
    response = httpx.post(
        f"{gateway}/v2/deployment/",
        headers={"Authorization": f"Bearer {token}"},
        files={"config": ("config.json", config_json), "code": ("code.zip", code_bundle())},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == QUEUE


def run(
    title: str,
    seed: int,
    load: Load,
    rig: Rig,
    receiver: CallbackReceiver,
    store_url: str,
) -> Report:
    rng = random.Random(seed)
    started = time.monotonic()
    planned = plan(load.tasks, rng)
    chaos = Chaos(rig, schedule(load.faults, load.seconds, rng), rng)
    chaos.start()
    produce(planned, rig.gateway_urls(), rig.token, receiver.url, load.seconds, rig.accepted)
    chaos.join()
    everything: list[Planned] = [*planned, *rig.extra]
    ids = [rig.accepted.ids[p.key] for p in everything if p.key in rig.accepted.ids]
    rows = wait_terminal(store_url, ids, timeout=240)
    with_callback = [rig.accepted.ids[p.key] for p in everything if p.callback]
    wait_callbacks(with_callback, receiver.snapshot, timeout=150)
    rows = fetch(store_url, ids)
    stalls = {tag: w for proc in rig.agents for tag, w in proc.stalls.items()}
    deaths = {tag: t for proc in rig.agents for tag, t in proc.deaths.items()}
    report = Report(title, seed, faults=rig.faults)
    check(
        report,
        everything,
        rig.accepted,
        rows,
        read_ledger(rig.ledger),
        stalls,
        receiver.snapshot(),
        hold_begins(rig.ledger),
        deaths,
    )
    report.outlived_agent = len(rig.orphans)
    report.violations += [f"{orphan} outlived its SIGKILLed agent" for orphan in rig.orphans]
    report.callback_deliveries = receiver.deliveries
    procs = {id(proc): proc for proc in [*rig.gateways, *rig.agents]}.values()
    report.errors_logged = logged_errors([proc.log_path for proc in procs])
    # Expected faults are logged as one-line warnings; a traceback is a bug the run found.
    report.violations += [
        f"the processes logged a traceback {n}×: {error}"
        for error, n in report.errors_logged.items()
    ]
    report.seconds = time.monotonic() - started
    text = report.text() + "\n  fault log:\n" + "\n".join(f"    {line}" for line in rig.log)
    publish(text)
    print(text)
    return report
