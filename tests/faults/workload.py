"""The load of the fault suite: the handler, the task mix, the producers, and the ledger.

Every handler run that gets to its end appends one line to the ledger file (``O_APPEND``, one
``write`` per line, so concurrent writers never interleave): task id, attempt, pid, the agent
incarnation it ran under, start and end, and a fresh token that the handler also returns (or
puts in its error message). The token in the task row then says which run's result the store
kept; every other run of that task is a run whose result was not written.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson

QUEUE = "chaos"
MAX_RETRIES = 5
MAX_CONTAINERS = 6
#: The mix of DESIGN issue 6: 5 % raise, 2 % crash once, the rest no-ops and 50 ms sleeps.
RAISE_SHARE, CRASH_SHARE, SLEEP_SHARE = 0.05, 0.02, 0.40
CALLBACK_SHARE = 0.25

HANDLER_SOURCE = '''\
"""Fault-suite handler: records each run that reaches its end in the ledger file."""

import json
import os
import signal
import time
import uuid

from conveyor import QueueDepthAutoscaler, TaskContext, task_queue

OPTIONS = json.loads(os.environ.get("FAULT_QUEUE_OPTIONS", "{}"))
#: ``hold`` outlives any pause or cut (the agent must kill it when it returns); ``late`` ends
#: during one, so its agent tries to write a result whose lease has gone.
STALE_S = {"hold": 30.0, "late": 6.0}


def _bound(name: str) -> str:
    """The folder named ``name`` bound into this sandbox (``--sandbox-bind``): a sandboxed
    handler has none of its agent's environment, so the rig hands it folders instead."""
    with open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            point = line.split()[4]
            if os.path.basename(point) == name:
                return point
    raise RuntimeError(f"no folder {name!r} is bound into this sandbox")


def _ledger() -> str:
    return os.environ.get("FAULT_LEDGER") or _bound("fault-ledger") + "/ledger.jsonl"


def _agent() -> str:
    """The agent incarnation running this process (unsandboxed: from its environment)."""
    if "FAULT_AGENT" in os.environ:
        return os.environ["FAULT_AGENT"]
    with open(_bound("fault-agent") + "/tag") as tag:
        return tag.read()


AGENT = _agent()


def _append(entry: dict) -> None:
    fd = os.open(_ledger(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\\n").encode())
    finally:
        os.close(fd)


@task_queue(name="chaos", autoscaler=QueueDepthAutoscaler(**OPTIONS.pop("autoscaler", {})),
            **OPTIONS)
def handler(kind: str, context: TaskContext) -> dict:
    started = time.time()
    if kind in STALE_S and context.attempt == 1:
        _append({"t": context.task_id, "ag": AGENT, "begin": kind})
        time.sleep(STALE_S[kind])
    if kind == "crash" and context.attempt == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    if kind == "sleep":
        time.sleep(0.05)
    token = uuid.uuid4().hex
    _append({
        "t": context.task_id, "a": context.attempt, "pid": os.getpid(),
        "ag": AGENT, "s": started, "e": time.time(),
        "tok": token, "k": kind,
    })
    if kind == "raise":
        raise ValueError(f"planned failure {token}")
    return {"token": token, "attempt": context.attempt}
'''


def queue_options(n_tasks: int) -> dict[str, Any]:
    """Decorator options shared by the deployed and the served queue."""
    return {
        "max_retries": MAX_RETRIES,
        "max_pending_tasks": n_tasks + 1000,
        "keep_warm_seconds": 30,
        "autoscaler": {"max_containers": MAX_CONTAINERS, "tasks_per_container": 2},
    }


@dataclass(frozen=True)
class Planned:
    key: str
    kind: str
    callback: bool


def plan(n_tasks: int, rng: random.Random) -> list[Planned]:
    tasks = []
    for i in range(n_tasks):
        r = rng.random()
        if r < RAISE_SHARE:
            kind = "raise"
        elif r < RAISE_SHARE + CRASH_SHARE:
            kind = "crash"
        elif r < RAISE_SHARE + CRASH_SHARE + SLEEP_SHARE:
            kind = "sleep"
        else:
            kind = "noop"
        callback = rng.random() < CALLBACK_SHARE
        tasks.append(Planned(f"fault-{i}-{uuid.uuid4().hex[:8]}", kind, callback))
    return tasks


@dataclass
class Accepted:
    """What the gateways answered: idempotency key → task id, and how often we had to retry."""

    ids: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    conflicts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def enqueue(
    task: Planned,
    gateways: Sequence[str],
    token: str,
    callback_url: str,
    accepted: Accepted,
    first: int = 0,
) -> str:
    """POST one task until a gateway accepts it; a failed request (gateway killed, store
    restarting) is retried on the next gateway with the same ``Idempotency-Key``, so a retry
    never makes a second task."""
    body: dict[str, Any] = {"kind": task.kind}
    if task.callback:
        body["callback_url"] = callback_url
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": task.key}
    for tries in range(600):
        gateway = gateways[(first + tries) % len(gateways)]
        try:
            response = httpx.post(
                f"{gateway}/taskqueue/{QUEUE}", json=body, headers=headers, timeout=15
            )
            if response.status_code == 200:
                task_id: str = response.json()["task_id"]
                with accepted.lock:
                    earlier = accepted.ids.setdefault(task.key, task_id)
                    if earlier != task_id:
                        accepted.conflicts.append(task.key)
                return task_id
        except httpx.HTTPError:
            pass
        with accepted.lock:
            accepted.retries += 1
        time.sleep(0.1)
    raise RuntimeError(f"could not enqueue {task.key}")


def produce(
    planned: Sequence[Planned],
    gateways: Sequence[str],
    token: str,
    callback_url: str,
    seconds: float,
    accepted: Accepted,
    producers: int = 4,
) -> None:
    """Enqueue every planned task, spread evenly over ``seconds``, round-robin over gateways."""
    start = time.monotonic()
    step = seconds / max(1, len(planned))

    def one(index: int) -> None:
        delay = start + index * step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        enqueue(planned[index], gateways, token, callback_url, accepted, first=index)

    with ThreadPoolExecutor(producers) as pool:
        list(pool.map(one, range(len(planned))))


@dataclass(frozen=True)
class Run:
    """One ledger line: a handler run that reached its end."""

    task_id: str
    attempt: int
    pid: int
    agent: str
    start: float
    end: float
    token: str
    kind: str


def read_ledger(path: Path) -> list[Run]:
    if not path.exists():
        return []
    runs = []
    for line in path.read_bytes().splitlines():
        d = orjson.loads(line)
        if d.get("begin"):
            continue
        runs.append(Run(d["t"], d["a"], d["pid"], d["ag"], d["s"], d["e"], d["tok"], d["k"]))
    return runs


def hold_begins(path: Path, kind: str = "hold") -> list[tuple[str, str]]:
    """(task id, agent) of every ``hold`` (or ``late``) run that began."""
    if not path.exists():
        return []
    lines = (orjson.loads(line) for line in path.read_bytes().splitlines())
    return [(d["t"], d["ag"]) for d in lines if d.get("begin") == kind]


def summarize_kinds(planned: Sequence[Planned]) -> str:
    counts = Counter(p.kind for p in planned)
    kinds = ("noop", "sleep", "raise", "crash", "hold", "late")
    return ", ".join(f"{kind} {counts[kind]}" for kind in kinds)
