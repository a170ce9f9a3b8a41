"""PostgreSQL under faults: two gateways and two agents as separate processes on a private
cluster; optionally one agent in its own network namespace (another machine) that is cut off."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conveyor.queue_config import AutoscalerConfig, QueueConfig
from tests.faults.chaos import Rig
from tests.faults.cluster import (
    CallbackReceiver,
    Netns,
    Proc,
    conveyor_argv,
    create_token,
    free_port,
    processes,
)
from tests.faults.conftest import private_pg, task_count
from tests.faults.scenario import Load, deploy, run
from tests.faults.workload import MAX_CONTAINERS, QUEUE, Accepted, queue_options

pytestmark = [pytest.mark.slow, pytest.mark.faults, pytest.mark.timeout(900)]

ONE_HOST_FAULTS = (
    "kill_worker",
    "kill_worker",
    "kill_worker",
    "kill_agent",
    "kill_agent_alone",
    "kill_gateway",
    "kill_gateway",
    "restart_pg",
    "restart_pg",
    "pause_agent",
)
NETNS_FAULTS = (
    "partition",
    "kill_worker",
    "kill_worker",
    "kill_gateway",
    "restart_pg",
    "kill_agent",
    "kill_agent_alone",
)


def _config(n_tasks: int) -> str:
    options = queue_options(n_tasks)
    autoscaler = AutoscalerConfig(**options.pop("autoscaler"))
    return QueueConfig(
        name=QUEUE, handler="tasks.py:handler", autoscaler=autoscaler, **options
    ).to_json()


def _run_postgres(tmp_path: Path, seed: int, load: Load, netns: Netns | None) -> None:
    hosts = ["127.0.0.1"] + ([netns.host_ip] if netns else [])
    pg = private_pg(hosts)
    try:
        url = pg.url()
        token = create_token(url, "faults")
        ledger = tmp_path / "fault-ledger" / "ledger.jsonl"  # its folder is bound into sandboxes
        ledger.parent.mkdir()
        env = {**os.environ, "FAULT_LEDGER": str(ledger), "CONVEYOR_STORE": url}
        gateways = []
        for name in ("gateway-a", "gateway-b"):
            port = free_port()
            gateways.append(
                Proc(
                    name,
                    conveyor_argv("server", "--store", url, "--port", str(port)),
                    tmp_path / name,
                    env,
                    url=f"http://127.0.0.1:{port}",
                )
            )
        # With another machine, this one has room for half the queue's containers, as a real
        # machine would: else, after the far agent restarts, this one can take every slot and
        # keep it warm, the far agent runs nothing, and the cut has nothing to cut off.
        cpus = ["--cpus", str(MAX_CONTAINERS // 2)] if netns is not None else []
        agents = [
            Proc(
                "agent-a",
                conveyor_argv("worker", "--store", url, *cpus),
                tmp_path / "agent-a",
                env,
                sandbox_binds=[ledger.parent],
            )
        ]
        cut_agent = None
        if netns is not None:
            far = pg.url(netns.host_ip)
            cut_agent = Proc(
                "agent-far",
                conveyor_argv("worker", "--store", far, prefix=netns.prefix()),
                tmp_path / "agent-far",
                {**env, "CONVEYOR_STORE": far},
                sandbox_binds=[ledger.parent],
            )
            agents.insert(0, cut_agent)
        else:
            agents.append(
                Proc(
                    "agent-b",
                    conveyor_argv("worker", "--store", url),
                    tmp_path / "agent-b",
                    env,
                    sandbox_binds=[ledger.parent],
                )
            )
        with processes([*gateways, *agents]), CallbackReceiver() as receiver:
            for proc in [*gateways, *agents]:
                proc.start()
            assert gateways[0].url is not None
            deploy(gateways[0].url, token, _config(load.tasks))
            rig = Rig(
                gateways,
                agents,
                ledger,
                token,
                receiver.url,
                Accepted(),
                [],
                pg=pg,
                netns=netns,
                cut_agent=cut_agent,
            )
            title = "PostgreSQL, agent in a network namespace" if netns else "PostgreSQL"
            report = run(title, seed, load, rig, receiver, url)
        assert not report.violations, "\n".join(report.violations[:20])
        assert report.lost == 0 and report.duplicate_completes == 0
        assert report.callbacks_missing == 0
        assert pg.restarts == rig.faults["restart_pg"] > 0
        assert rig.faults["kill_agent_alone"] == 1
        # A hold task ran across the pause or the cut, and its agent killed it on return.
        assert report.foreign_stopped >= 1
        if netns is not None:
            assert rig.faults["partition"] == 1
    finally:
        pg.stop()


def test_postgres_two_gateways_two_agents_under_faults(tmp_path: Path, seed: int) -> None:
    load = Load(task_count(5000), 75.0, ONE_HOST_FAULTS)
    _run_postgres(tmp_path, seed, load, None)


def test_postgres_agent_on_another_machine_cut_off(tmp_path: Path, seed: int, netns: Netns) -> None:
    load = Load(task_count(600), 45.0, NETNS_FAULTS)
    _run_postgres(tmp_path, seed, load, netns)
