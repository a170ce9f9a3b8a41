"""Shared pieces: child processes stopped by pid, Redis markers, percentiles, machine facts."""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil
import redis

ROOT = Path(__file__).resolve().parents[2]
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
# One Redis db number per peer, away from db 0, so nothing collides with the test suite.
REDIS_DB = {"celery": 1, "rq": 2, "dramatiq": 3, "arq": 4, "huey": 5, "taskiq": 6, "markers": 7}
MARKERS = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB["markers"])


def redis_url(system: str) -> str:
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB[system]}"


def pg_url(db: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{db}"


class Procs:
    """Child processes, each the leader of its own process group, stopped by pid."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen[bytes]] = []
        atexit.register(self.stop_all)

    def start(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
              cwd: Path = ROOT) -> subprocess.Popen[bytes]:
        log.parent.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv), cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        self.live.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        """SIGTERM the group, wait up to ``grace``, then SIGKILL the group."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                # Grandchildren of the group may outlive the leader for a moment.
                if sig is signal.SIGTERM:
                    os.killpg(proc.pid, signal.SIGKILL)
                break
            except subprocess.TimeoutExpired:
                continue
            except ProcessLookupError:
                break
        if proc in self.live:
            self.live.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.live):
            self.stop(proc, grace=5.0)


PROCS = Procs()


def wait_until(check: Callable[[], bool], timeout: float, what: str, pause: float = 0.005) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s")
        time.sleep(pause)


def host_pid(pid: int, namespace: bytes | None) -> int:
    """The pid on this machine of the process that saw itself as ``pid`` in the PID
    namespace ``namespace`` (``readlink /proc/self/ns/pid``; ``None``: not namespaced)."""
    if namespace is None:
        return pid
    wanted = namespace.decode()
    for candidate in psutil.pids():
        try:
            if os.readlink(f"/proc/{candidate}/ns/pid") != wanted:
                continue
            status = Path(f"/proc/{candidate}/status").read_text()
        except OSError:
            continue
        ns_pids = next(line for line in status.splitlines() if line.startswith("NSpid:"))
        if int(ns_pids.split()[-1]) == pid:
            return candidate
    raise RuntimeError(f"no process is pid {pid} in {wanted}")


def pid_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def machine() -> dict[str, str]:
    cpu = platform.processor() or "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram_gib": f"{psutil.virtual_memory().total / 2**30:.1f}",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "conveyor_sandbox": ("bwrap" if shutil.which("bwrap")
                             else "none: bwrap not on PATH, CONVEYOR_NO_SANDBOX=1"),
    }


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)
