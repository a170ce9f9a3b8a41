"""``conveyor server --processes N``: N gateway processes share the port (SO_REUSEPORT), the
kernel spreads connections over them, SIGTERM stops all, and one that dies stops the rest."""

from __future__ import annotations

import http.client
import signal
import time
from pathlib import Path

import psutil
import pytest

from tests.cli.conftest import one_error_line, run_cli
from tests.gateway_process import GatewayProcess, start_gateway


def children(gateway: GatewayProcess, count: int) -> list[psutil.Process]:
    """The gateway's child processes once ``count`` of them listen on its port."""
    parent = psutil.Process(gateway.process.pid)
    deadline = time.monotonic() + 60
    while True:
        listening = [
            child for child in parent.children()
            if any(c.status == psutil.CONN_LISTEN and c.laddr.port == gateway.port
                   for c in child.net_connections("tcp"))
        ]
        if len(listening) == count or time.monotonic() > deadline:
            return listening
        time.sleep(0.1)


@pytest.fixture
def gateway(tmp_path: Path) -> GatewayProcess:
    return start_gateway(tmp_path, f"sqlite:///{tmp_path / 'conveyor.db'}", "--processes", "2")


def test_two_processes_share_the_port_and_its_connections(gateway: GatewayProcess) -> None:
    served = children(gateway, 2)
    assert len(served) == 2, gateway.log()
    assert not any(  # the parent holds no socket of the port
        c.laddr.port == gateway.port
        for c in psutil.Process(gateway.process.pid).net_connections("tcp")
    )
    connections = []
    for _ in range(24):  # kept open: each is served by one process for its life
        conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        connections.append(conn)
    per_child = [
        sum(c.status == psutil.CONN_ESTABLISHED and c.laddr.port == gateway.port
            for c in child.net_connections("tcp"))
        for child in served
    ]
    for conn in connections:
        conn.close()
    assert sum(per_child) == 24 and min(per_child) > 0, per_child
    assert gateway.stop() == 0
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE
                   for child in served)


def test_a_gateway_process_that_dies_stops_the_others(gateway: GatewayProcess) -> None:
    first, second = children(gateway, 2)
    first.send_signal(signal.SIGKILL)
    assert gateway.process.wait(timeout=30) == 1
    second.wait(timeout=10)  # gone with it, not left holding the port


def test_a_busy_port_is_one_error_line_and_no_process(tmp_path: Path) -> None:
    with start_gateway(tmp_path, f"sqlite:///{tmp_path / 'a.db'}").process as other:
        port = next(
            c.laddr.port for c in psutil.Process(other.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN
        )
        result = run_cli(tmp_path, "server", "--processes", "2", "--port", str(port),
                         "--store", f"sqlite:///{tmp_path / 'b.db'}")
        other.terminate()
    assert f"port {port} is already in use" in one_error_line(result)
