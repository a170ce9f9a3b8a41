"""The floor rows: what this machine allows, measured in the same run as the peers.

* no-op HTTP: ``bench/peers/floor_app.py`` (a minimal ASGI app on uvicorn + httptools + uvloop,
  conveyor's server stack) in its own process, driven by the very client code of the conveyor
  rows (``http_client``): 1 keep-alive client POSTing ``/taskqueue/noop``, 8 forked clients
  from one instant, 1 client GETting ``/v2/task/{id}``;
* one-row insert+commit and one-row read by primary key, 1 caller, on SQLite (WAL,
  ``synchronous = NORMAL``, as conveyor's store sets it) and on PostgreSQL (psycopg, one
  autocommit connection, a scratch table in its own database ``bench_floor``).
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
from bench.peers.harness import PG_ADMIN, PROCS, pg_url, wait_until
from bench.peers.http_client import KeepAlive, enqueue_concurrent

NAME = "floor"
DB = "bench_floor"
#: Look-ups per read row: as the status workload, up to this many or ``READ_S`` seconds.
READS, READ_S = 3000, 15.0
#: Inserts per insert row stop after this many seconds even if fewer than ``tasks`` were done.
INSERT_S = 10.0
TABLE = ("CREATE TABLE floor (id TEXT PRIMARY KEY, payload TEXT NOT NULL, "
         "created_at BIGINT NOT NULL)")
#: (key, label): the floor rows, all "higher is better", per second.
ROWS: list[tuple[str, str]] = [
    ("http_post_1c", "no-op HTTP request (POST), 1 client (/s)"),
    ("http_post_8c", "no-op HTTP request (POST), 8 clients (/s)"),
    ("http_get_1c", "no-op HTTP request (GET), 1 client (/s)"),
    ("sqlite_insert", "one-row insert+commit, SQLite, 1 caller (rows/s)"),
    ("pg_insert", "one-row insert+commit, PostgreSQL, 1 caller (rows/s)"),
    ("sqlite_read", "one-row SELECT by primary key, SQLite, 1 caller (/s)"),
    ("pg_read", "one-row SELECT by primary key, PostgreSQL, 1 caller (/s)"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Floors:
    def __init__(self, logs: Path, tasks: int, reps: int) -> None:
        self.logs, self.tasks, self.reps = logs, tasks, reps
        self.samples: dict[str, list[float]] = {}
        self.errors: dict[str, str] = {}

    def add(self, key: str, value: float) -> None:
        self.samples.setdefault(key, []).append(value)
        print(f"  {NAME:<16} {key:<24} {value:12.2f}", flush=True)

    def guarded(self, part: str, body: Callable[[], None]) -> None:
        """One part failing (no PostgreSQL, say) leaves the other floors standing."""
        try:
            body()
        except Exception:
            self.errors[part] = traceback.format_exc()
            print(self.errors[part], flush=True)

    def all(self) -> dict[str, list[float]]:
        self.guarded("http", self.http)
        self.guarded("sqlite", self.sqlite)
        self.guarded("pg", self.pg)
        return self.samples

    # -- no-op HTTP -----------------------------------------------------------------------
    def http(self) -> None:
        port = _free_port()
        argv = [sys.executable, "-m", "bench.peers.floor_app", "--port", str(port)]
        proc = PROCS.start(argv, self.logs / "floor-http.log")
        try:
            def up() -> bool:
                if proc.poll() is not None:
                    raise RuntimeError(f"floor app exited with {proc.returncode}")
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
                except httpx.HTTPError:
                    return False

            wait_until(up, 60, "floor app", 0.05)
            client = KeepAlive(port, "floor-token")
            try:
                for _ in range(50):  # warm the connection and the server's code paths
                    client.call("POST", "/taskqueue/noop", {"args": [0]})
                for _ in range(self.reps):
                    began = time.perf_counter()
                    for i in range(self.tasks):
                        client.call("POST", "/taskqueue/noop", {"args": [i]})
                    self.add("http_post_1c", self.tasks / (time.perf_counter() - began))
                for _ in range(self.reps):
                    ids, elapsed = enqueue_concurrent(port, "floor-token", "/taskqueue/noop",
                                                      range(self.tasks))
                    assert len(set(ids)) == self.tasks
                    self.add("http_post_8c", self.tasks / elapsed)
                for _ in range(self.reps):
                    task_id = str(uuid.uuid4())
                    count, began = 0, time.perf_counter()
                    while count < READS and time.perf_counter() - began < READ_S:
                        client.call("GET", f"/v2/task/{task_id}")
                        count += 1
                    self.add("http_get_1c", count / (time.perf_counter() - began))
            finally:
                client.close()
        finally:
            PROCS.stop(proc)

    # -- one-row insert+commit and read ---------------------------------------------------
    def _rows(self, insert: Callable[[str, str, int], None],
              read: Callable[[str], object], store: str) -> None:
        for _ in range(self.reps):
            ids: list[str] = []
            began = time.perf_counter()
            for i in range(self.tasks):
                task_id = str(uuid.uuid4())
                insert(task_id, f'{{"args": [{i}], "kwargs": {{}}}}', time.time_ns() // 1000)
                ids.append(task_id)
                if time.perf_counter() - began > INSERT_S:
                    break
            self.add(f"{store}_insert", len(ids) / (time.perf_counter() - began))
            count, began = 0, time.perf_counter()
            while count < READS and time.perf_counter() - began < READ_S:
                read(ids[(count * 7919) % len(ids)])
                count += 1
            self.add(f"{store}_read", count / (time.perf_counter() - began))

    def sqlite(self) -> None:
        folder = Path(tempfile.mkdtemp(prefix="bench-floor-sqlite-"))
        try:
            conn = sqlite3.connect(folder / "floor.db", timeout=30, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 30000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # as conveyor's store configures it
            conn.execute(TABLE)

            def insert(task_id: str, payload: str, now_us: int) -> None:
                # As conveyor writes: an explicit write transaction, committed per row.
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("INSERT INTO floor (id, payload, created_at) VALUES (?, ?, ?)",
                             (task_id, payload, now_us))
                conn.execute("COMMIT")

            def read(task_id: str) -> object:
                return conn.execute("SELECT payload FROM floor WHERE id = ?",
                                    (task_id,)).fetchone()

            try:
                self._rows(insert, read, "sqlite")
            finally:
                conn.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def pg(self) -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {DB}")
        try:
            with psycopg.connect(pg_url(DB), autocommit=True) as conn:
                conn.execute(TABLE)

                def insert(task_id: str, payload: str, now_us: int) -> None:
                    conn.execute("INSERT INTO floor (id, payload, created_at) VALUES (%s, %s, %s)",
                                 (task_id, payload, now_us))

                def read(task_id: str) -> object:
                    return conn.execute("SELECT payload FROM floor WHERE id = %s",
                                        (task_id,)).fetchone()

                self._rows(insert, read, "pg")
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
