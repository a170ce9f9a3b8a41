"""Real processes for the fault suite: a private PostgreSQL cluster, gateways, agents, a
network namespace, and a callback receiver.

The machine's shared PostgreSQL (5432) is never touched: each run makes its own cluster with
``initdb`` in a temporary folder and restarts *that* one (the equivalent of ``pg_ctlcluster …
restart`` without disturbing anyone else).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil

from tests.sandboxing import sandbox_flags

PG_USER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server binaries, or None."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return versions[-1] if versions else None


def can_make_cluster() -> str | None:
    """Why a private cluster cannot be made here, or None if it can."""
    if pg_bindir() is None:
        return "no PostgreSQL server binaries under /usr/lib/postgresql"
    if os.geteuid() != 0:
        return "initdb must run as the postgres OS user, which needs root here"
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        return "no postgres OS user"
    return None


class PrivatePostgres:
    """A throwaway PostgreSQL cluster on a free port, listening on ``hosts``."""

    def __init__(self, hosts: Sequence[str] = ("127.0.0.1",)) -> None:
        bindir = pg_bindir()
        assert bindir is not None
        self.bindir = bindir
        self.hosts = list(hosts)
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="conveyor-faults-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.restarts = 0
        pw = pwd.getpwnam(PG_USER)
        os.chown(self.folder, pw.pw_uid, pw.pw_gid)

    def url(self, host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres@{host}:{self.port}/postgres"

    def _as_postgres(self, *args: str, timeout: float = 120) -> None:
        subprocess.run(
            ["runuser", "-u", PG_USER, "--", *args],
            check=True,
            capture_output=True,
            timeout=timeout,
            cwd=self.folder,
        )

    def _options(self) -> str:
        return (
            f"-p {self.port} -k {self.folder} -c listen_addresses={','.join(self.hosts)}"
            " -c max_connections=200 -c fsync=off"
        )

    def _pg_ctl(self, *args: str) -> None:
        """``pg_ctl`` on this cluster, with its log file and server options."""
        self._as_postgres(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", self._options(), "-w", *args,
        )  # fmt: skip

    def start(self) -> None:
        self._as_postgres(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_USER,
            "--auth=trust", "-E", "UTF8",
        )  # fmt: skip
        with (self.data / "pg_hba.conf").open("a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\n")
        self._pg_ctl("start")

    def restart(self) -> None:
        """``pg_ctl restart -m fast``: every session is cut, as a real restart does."""
        self._pg_ctl("-m", "fast", "restart")
        self.restarts += 1

    def stop(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self._pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Netns:
    """A network namespace joined to the host by a veth pair on a private /30."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str

    @classmethod
    def create(cls) -> Netns:
        tag = secrets.token_hex(3)
        # 10.231.x.y/30 is a private block nothing else on this machine uses.
        block = int(tag[:2], 16) & 0xFC
        ns = cls(
            f"cvf-{tag}",
            f"cvf{tag}h",
            f"cvf{tag}n",
            f"10.231.77.{block + 1}",
            f"10.231.77.{block + 2}",
        )
        try:
            ns._ip("netns", "add", ns.name)
            ns._ip("link", "add", ns.host_if, "type", "veth", "peer", "name", ns.ns_if)
            ns._ip("link", "set", ns.ns_if, "netns", ns.name)
            ns._ip("addr", "add", f"{ns.host_ip}/30", "dev", ns.host_if)
            ns._ip("link", "set", ns.host_if, "up")
            ns._inside("ip", "addr", "add", f"{ns.ns_ip}/30", "dev", ns.ns_if)
            ns._inside("ip", "link", "set", ns.ns_if, "up")
            ns._inside("ip", "link", "set", "lo", "up")
        except (subprocess.CalledProcessError, FileNotFoundError):
            ns.delete()
            raise
        return ns

    @staticmethod
    def _ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)

    def _inside(self, *args: str) -> None:
        subprocess.run(
            ["ip", "netns", "exec", self.name, *args], check=True, capture_output=True, timeout=30
        )

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        self._ip("link", "set", self.host_if, "down")

    def reconnect(self) -> None:
        self._ip("link", "set", self.host_if, "up")

    def delete(self) -> None:
        for args in (("link", "del", self.host_if), ("netns", "del", self.name)):
            with contextlib.suppress(subprocess.CalledProcessError):
                self._ip(*args)


@dataclass
class Proc:
    """One conveyor process in its own session, so ``killpg`` takes its children too."""

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    url: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    incarnation: int = 0
    #: Incarnation tag → (from, to) wall-clock windows it was paused or cut off.
    stalls: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    #: Incarnation tag → wall-clock second it was SIGKILLed.
    deaths: dict[str, float] = field(default_factory=dict)
    #: An agent (``serve``, ``worker``): its worker processes are sandboxed with these folders
    #: bound in, and one ``fault-agent`` folder per incarnation that names it (``tag``).
    sandbox_binds: Sequence[Path] | None = None

    @property
    def tag(self) -> str:
        return f"{self.name}#{self.incarnation}"

    @property
    def log_path(self) -> Path:
        """stdout and stderr of every incarnation."""
        return self.cwd / f"{self.name}.log"

    def start(self) -> None:
        self.incarnation += 1
        self.cwd.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        env = {**self.env, "FAULT_AGENT": self.tag}
        argv = list(self.argv)
        if self.sandbox_binds is not None:
            flags = sandbox_flags(*self.sandbox_binds)
            if "--no-sandbox" not in flags:  # sandboxed: its handlers see no FAULT_AGENT
                named = self.cwd / f"incarnation-{self.incarnation}" / "fault-agent"
                named.mkdir(parents=True, exist_ok=True)
                (named / "tag").write_text(self.tag)
                flags += sandbox_flags(named)
            argv += flags
        self.popen = subprocess.Popen(
            argv, cwd=self.cwd, env=env, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        if self.url is not None:
            wait_http(self.url + "/healthz", self.popen)

    def kill(self) -> None:
        """SIGKILL the process and all its children (a lost machine)."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.deaths[self.tag] = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(30)

    def kill_alone(self) -> None:
        """SIGKILL the process only, as the OOM killer does: its children must die with it."""
        if self.popen is None or self.popen.poll() is not None:
            return
        self.deaths[self.tag] = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.popen.pid, signal.SIGKILL)
        self.popen.wait(30)

    def stop(self) -> None:
        """SIGTERM (drain), then SIGKILL what is left."""
        if self.popen is None or self.popen.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGCONT)
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.kill()

    def pause(self) -> None:
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.popen is not None
        os.killpg(self.popen.pid, signal.SIGCONT)

    def note_stall(self, start: float, end: float) -> None:
        self.stalls.setdefault(self.tag, []).append((start, end))

    def children(self) -> list[int]:
        """Pids of the worker processes (``conveyor.runner.main``) under this process."""
        if self.popen is None or self.popen.poll() is not None:
            return []
        try:
            kids = psutil.Process(self.popen.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        found = []
        for kid in kids:
            with contextlib.suppress(psutil.Error):
                argv = kid.cmdline()  # the runner itself, not the bwrap around it
                if "conveyor.runner.main" in argv and Path(argv[0]).name != "bwrap":
                    found.append(kid.pid)
        return found

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def conveyor_argv(*args: str, prefix: Sequence[str] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "conveyor", *args]


def wait_http(url: str, popen: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None and popen.poll() is not None:
            raise RuntimeError(f"{popen.args!r} exited ({popen.returncode}) before {url} answered")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in {timeout}s")


def create_token(store_url: str, workspace: str) -> str:
    """``conveyor token create``: the token is the last line it prints."""
    out = subprocess.run(
        conveyor_argv("token", "create", "--workspace", workspace, "--store", store_url),
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip().splitlines()[-1]


class _Server(ThreadingHTTPServer):
    #: The accept backlog of a real web server (uvicorn's default), not http.server's 5: with
    #: 5, a burst from the sender is reset by the kernel while this busy test process is slow
    #: to accept, and what is measured is this receiver, not conveyor.
    request_queue_size = 2048


class CallbackReceiver:
    """An HTTP server that records callback deliveries by ``x-task-id`` (deduplicated)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delivered: dict[str, str] = {}
        self.deliveries = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                task_id = self.headers.get("x-task-id", "")
                with receiver.lock:
                    receiver.deliveries += 1
                    receiver.delivered[task_id] = self.headers.get("x-task-status", "")
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> CallbackReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.delivered)


@contextlib.contextmanager
def processes(procs: Sequence[Proc]) -> Iterator[None]:
    """Stop every process at the end, whatever happened."""
    try:
        yield
    finally:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.resume() if proc.alive() else None
            with contextlib.suppress(Exception):
                proc.kill()
