"""conveyor over HTTP: (a) ``conveyor serve`` on SQLite, (b) ``server`` + ``worker`` on PostgreSQL.

The ``noop`` queue has ``workers=2`` and exactly one container, so 2 worker processes run it.
Workloads talk HTTP/1.1 over one keep-alive ``http.client`` connection (stdlib,
``bench/peers/http_client.py``, the same client as the no-op HTTP floor's).
"""

from __future__ import annotations

import io
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
from bench.peers.adapters import conveyor_app
from bench.peers.adapters.base import Adapter
from bench.peers.harness import PG_ADMIN, PROCS, pg_url, venv_bin, wait_until
from bench.peers.http_client import KeepAlive, enqueue_concurrent

APP = Path(conveyor_app.__file__)
QUEUES = (conveyor_app.noop, conveyor_app.stamp, conveyor_app.sleeper)
BATCH = 500
#: Worker processes run sandboxed (bubblewrap) where ``bwrap`` is on PATH; on a machine
#: without it, unsandboxed (conveyor refuses to start otherwise). The JSON's machine facts say.
SANDBOX_ENV = {} if shutil.which("bwrap") else {"CONVEYOR_NO_SANDBOX": "1"}


class ConveyorAdapter(Adapter):
    """What both stores share: the HTTP client side."""

    has_bulk = True
    can_cancel = True
    durable = True
    port: int
    #: The store URL a direct producer is given (``Client(store=...)``).
    store_url: str
    _direct_client: Any = None

    # -- the direct producer: ``Client(store=STORE_URL, token=TOKEN)``, no HTTP ------------
    def _direct(self) -> Any:
        """The direct-producer client, made once. Raises (TypeError) where ``Client`` does
        not take ``store=`` yet; the run records that and shows "—"."""
        client = self._direct_client
        if client is None:
            from conveyor import Client

            client = Client(store=self.store_url, token=self.token)  # type: ignore[call-arg]
            self._direct_client = client
        return client

    def close_direct(self) -> None:
        client = self._direct_client
        if client is not None and hasattr(client, "close"):
            client.close()
        self._direct_client = None

    def enqueue_direct(self, args: Sequence[int]) -> list[Any]:
        put = self._direct().put
        return [put("noop", i).id for i in args]

    def lookup_direct(self, handle: Any) -> object:
        return self._direct().task(handle)["status"]

    def _connect(self, token: str) -> None:
        self.token = token
        self.fast = KeepAlive(self.port, token)
        self.http = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )

    def _wait_healthy(self, proc: subprocess.Popen[bytes]) -> None:
        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name}: server exited with {proc.returncode}")
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        wait_until(up, 60, f"{self.name} gateway", 0.05)
        if hasattr(self, "fast"):  # a restarted server closed the old connection
            self.fast.close()
            self.fast = KeepAlive(self.port, self.token)

    def enqueue_single(self, args: Sequence[int]) -> list[Any]:
        call = self.fast.call
        return [call("POST", "/taskqueue/noop", {"args": [i]})["task_id"] for i in args]

    def enqueue_concurrent(self, args: Sequence[int]) -> tuple[list[str], float]:
        """8 forked client processes from one instant (``http_client.enqueue_concurrent``)."""
        return enqueue_concurrent(self.port, self.token, "/taskqueue/noop", args)

    def enqueue_bulk(self, args: Sequence[int]) -> list[Any]:
        ids: list[str] = []
        for start in range(0, len(args), BATCH):
            body = {"tasks": [{"args": [i]} for i in args[start : start + BATCH]]}
            ids += self.fast.call("POST", "/taskqueue/noop/batch", body)["task_ids"]
        return ids

    def _task(self, task_id: str) -> dict[str, Any]:
        value: dict[str, Any] = self.fast.call("GET", f"/v2/task/{task_id}")
        return value

    def is_complete(self, handle: Any) -> bool:
        return self._task(handle)["status"] == "COMPLETE"

    def lookup(self, handle: Any) -> object:
        return self._task(handle)["status"]

    def stamp(self) -> float:
        task_id = self.fast.call("POST", "/taskqueue/stamp", {"args": [0]})["task_id"]
        returned = time.time()
        deadline = returned + 30
        while (task := self._task(task_id))["status"] != "COMPLETE":
            if time.time() > deadline:
                raise TimeoutError(f"{self.name} stamp: {task['status']}")
            time.sleep(0.002)
        return float(task["result"]) - returned

    def cancel_one(self, key: str) -> float:
        task_id = self.fast.call("POST", "/taskqueue/sleeper", {"args": [key]})["task_id"]
        return self.cancel_by_pid(
            key, lambda: self.fast.call("DELETE", "/v2/task/cancel/", {"task_ids": [task_id]})
        )

    # -- growth: rows inserted directly, as the agent leaves a completed task ---------------
    COLUMNS = (
        "id, workspace_id, stub_id, status, payload, attempt, fence, max_retries, timeout_s, "
        "ttl_s, retry_backoff_s, container_id, created_at, started_at, ended_at, updated_at, "
        "runnable_at, result"
    )

    @staticmethod
    def _row(ws: str, stub: str, n: int, now_us: int) -> tuple[Any, ...]:
        payload = f'{{"args": [{n}], "kwargs": {{}}}}'
        return (str(uuid.uuid4()), ws, stub, "COMPLETE", payload, 1, 1, 3, 3600.0, 7200.0, 0.0,
                "taskqueue-bench-00000000", now_us, now_us, now_us, now_us, now_us, str(n))


class ConveyorSqlite(ConveyorAdapter):
    name = "conveyor-sqlite"
    workers_note = ("`conveyor serve` (gateway + agent + SQLite in one process); queue `noop` "
                    "with workers=2 and one container: 2 worker processes")
    port = 8790

    def setup(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="bench-conveyor-sqlite-"))
        self.db = self.folder / "conveyor.db"
        self.store_url = f"sqlite:///{self.db}"  # the folder is absolute: sqlite:////tmp/...
        self.serving: subprocess.Popen[bytes] | None = None
        # First run registers every queue (stubs persist), then stays in idle mode.
        self._serve(["noop", "stamp", "sleeper"])
        self.token = (self.folder / "token").read_text().strip()
        self._connect(self.token)
        self._serve(["idle"])

    def _serve(self, funcs: list[str]) -> None:
        if self.serving is not None:
            PROCS.stop(self.serving)
        argv = [venv_bin("conveyor"), "serve", *(f"{APP}:{f}" for f in funcs),
                "--store", f"sqlite:///{self.db}", "--port", str(self.port)]
        self.serving = PROCS.start(argv, self.logs / "conveyor-sqlite.log", env=SANDBOX_ENV,
                                   cwd=self.folder)
        self._wait_healthy(self.serving)

    def teardown(self) -> None:
        self.close_direct()
        if self.serving is not None:
            PROCS.stop(self.serving)
        self.http.close()
        self.fast.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def reset(self) -> None:
        with sqlite3.connect(self.db, timeout=30) as conn:
            conn.execute("DELETE FROM tasks")

    def start_workers(self) -> None:
        # serve runs the agent only for the queues it was started with.
        assert self.serving is not None
        PROCS.stop(self.serving)
        argv = [venv_bin("conveyor"), "serve", *(f"{APP}:{f}" for f in ("noop", "stamp",
                "sleeper")), "--store", f"sqlite:///{self.db}", "--port", str(self.port)]
        self.serving = PROCS.start(argv, self.logs / "conveyor-sqlite.log", env=SANDBOX_ENV,
                                   cwd=self.folder)

    def wait_workers_up(self) -> None:
        assert self.serving is not None
        self._wait_healthy(self.serving)

    def stop_workers(self) -> None:
        self._serve(["idle"])

    def load_completed(self, count: int) -> None:
        with sqlite3.connect(self.db, timeout=30) as conn:
            ws, stub = conn.execute(
                "SELECT workspace_id, id FROM stubs WHERE name = 'noop' ORDER BY version DESC"
            ).fetchone()
            now_us = int(time.time() * 1e6)
            marks = ", ".join("?" * 18)
            for start in range(0, count, 50_000):
                rows = (self._row(ws, stub, n, now_us)
                        for n in range(start, min(count, start + 50_000)))
                conn.executemany(f"INSERT INTO tasks ({self.COLUMNS}) VALUES ({marks})", rows)
                conn.commit()

    def sample_stored(self, count: int) -> list[Any]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            rows = conn.execute(
                "SELECT id FROM tasks WHERE status = 'COMPLETE' ORDER BY random() LIMIT ?",
                (count,),
            ).fetchall()
        return [row[0] for row in rows]


class ConveyorPostgres(ConveyorAdapter):
    name = "conveyor-pg"
    workers_note = ("`conveyor server` + one `conveyor worker` (agent); queue `noop` with "
                    "workers=2 and one container: 2 worker processes")
    port = 8791
    DB = "bench_conveyor"
    #: Gateway processes of ``conveyor server --processes N``.
    gateway_processes = 1

    def setup(self) -> None:
        self.url = self.store_url = pg_url(self.DB)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {self.DB}")
        made = subprocess.run(
            [venv_bin("conveyor"), "token", "create", "--workspace", "bench", "--store", self.url],
            check=True, capture_output=True, text=True, timeout=60,
        )
        self.token = made.stdout.strip().splitlines()[-1]
        argv = [venv_bin("conveyor"), "server", "--store", self.url, "--port", str(self.port),
                "--processes", str(self.gateway_processes)]
        self.server = PROCS.start(argv, self.logs / "conveyor-pg-server.log")
        self._wait_healthy(self.server)
        self._connect(self.token)
        bundle = io.BytesIO()
        with zipfile.ZipFile(bundle, "w") as zf:
            zf.write(APP, APP.name)
        for queue in QUEUES:
            config = queue.config(handler=f"{APP.name}:{queue.name}").to_json()
            response = self.http.post(
                "/v2/deployment/",
                files={"config": ("config.json", config), "code": ("code.zip",
                                                                   bundle.getvalue())},
            )
            response.raise_for_status()
        self.sql = psycopg.connect(self.url, autocommit=True)

    def teardown(self) -> None:
        self.close_direct()
        self.stop_workers()
        PROCS.stop(self.server)
        self.http.close()
        self.fast.close()
        self.sql.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.DB} WITH (FORCE)")

    def reset(self) -> None:
        self.sql.execute("DELETE FROM tasks")

    def start_workers(self) -> None:
        argv = [venv_bin("conveyor"), "worker", "--store", self.url]
        self.workers = [PROCS.start(argv, self.logs / "conveyor-pg-worker.log",
                                    env=SANDBOX_ENV)]

    def load_completed(self, count: int) -> None:
        ws, stub = self.sql.execute(
            "SELECT workspace_id, id FROM stubs WHERE name = 'noop' ORDER BY version DESC"
        ).fetchone() or ("", "")
        now_us = int(time.time() * 1e6)
        with self.sql.cursor() as cur, cur.copy(f"COPY tasks ({self.COLUMNS}) FROM STDIN") as copy:
            for n in range(count):
                copy.write_row(self._row(ws, stub, n, now_us))
        self.sql.execute("ANALYZE tasks")

    def sample_stored(self, count: int) -> list[Any]:
        rows = self.sql.execute(
            "SELECT id FROM tasks WHERE status = 'COMPLETE' ORDER BY random() LIMIT %s", (count,)
        ).fetchall()
        return [row[0] for row in rows]
