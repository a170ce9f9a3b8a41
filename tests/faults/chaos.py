"""Faults at random moments from a seeded schedule, injected into real processes."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.faults.cluster import Netns, PrivatePostgres, Proc
from tests.faults.workload import Accepted, Planned, enqueue, hold_begins
from tests.integration.conftest import pid_alive

#: A pause or a cut lasts longer than the lease (10 s) and than the time after which a silent
#: container stops counting against ``max_containers`` (15 s), so the other agent can take over.
STALL_S = 18.0
#: A stale attempt may still be handed to its worker just after the agent comes back (before
#: its next heartbeat learns the lease is gone); such runs belong to the stall.
STALL_TAIL_S = 3.0
#: A worker process dies within about a second of its agent; this is that on a loaded machine.
ORPHAN_GRACE_S = 3.0


@dataclass
class Rig:
    """Everything the chaos can hit, and how the test enqueues the ``hold`` tasks."""

    gateways: list[Proc]
    agents: list[Proc]
    ledger: Path
    token: str
    callback_url: str
    accepted: Accepted
    extra: list[Planned]
    pg: PrivatePostgres | None = None
    netns: Netns | None = None
    #: The agent inside ``netns``.
    cut_agent: Proc | None = None
    faults: Counter[str] = field(default_factory=Counter)
    log: list[str] = field(default_factory=list)
    #: Worker processes still alive ``ORPHAN_GRACE_S`` after their agent was SIGKILLed alone.
    orphans: list[str] = field(default_factory=list)

    def gateway_urls(self) -> list[str]:
        return [g.url for g in self.gateways if g.url is not None]


def schedule(kinds: Sequence[str], seconds: float, rng: random.Random) -> list[tuple[float, str]]:
    """Each kind once, at a random moment inside ``seconds`` (sorted)."""
    return sorted((rng.uniform(2.0, seconds), kind) for kind in kinds)


class Chaos:
    def __init__(self, rig: Rig, events: Sequence[tuple[float, str]], rng: random.Random) -> None:
        self.rig = rig
        self.events = list(events)
        self.rng = rng
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None
        self.actions: dict[str, Callable[[], None]] = {
            "kill_worker": self.kill_worker,
            "kill_agent": self.kill_agent,
            "kill_agent_alone": lambda: self.kill_alone("kill_agent_alone"),
            "kill_serve_alone": lambda: self.kill_alone("kill_serve_alone"),
            "kill_gateway": lambda: self.kill_gateway("kill_gateway"),
            "kill_serve": lambda: self.kill_gateway("kill_serve"),
            "restart_pg": self.restart_pg,
            "pause_agent": self.pause_agent,
            "partition": self.partition,
        }

    def start(self) -> None:
        self.thread.start()

    def join(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        start = time.monotonic()
        try:
            for at, kind in self.events:
                delay = start + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.actions[kind]()
        except BaseException as exc:  # reported by join()
            self.error = exc

    def _note(self, kind: str, text: str) -> None:
        self.rig.faults[kind] += 1
        self.rig.log.append(f"{time.strftime('%H:%M:%S')} {kind}: {text}")

    def _busy_agents(self, wait_s: float = 5.0) -> list[Proc]:
        deadline = time.monotonic() + wait_s
        while True:
            busy = [a for a in self.rig.agents if a.alive() and a.children()]
            if busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.1)

    def kill_worker(self) -> None:
        busy = self._busy_agents()
        if not busy:
            self.rig.log.append("kill_worker skipped: no worker process running")
            return
        agent = self.rng.choice(busy)
        pids = agent.children()
        if not pids:
            return
        pid = self.rng.choice(pids)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self._note("kill_worker", f"worker {pid} of {agent.tag}")

    def kill_agent(self) -> None:
        agent = self.rng.choice([a for a in self.rig.agents if a.alive()])
        tag = agent.tag
        agent.kill()
        time.sleep(0.5)
        agent.start()
        self._note("kill_agent", f"{tag} (SIGKILL to its process group), restarted")

    def kill_alone(self, kind: str) -> None:
        """SIGKILL an agent's (or ``serve``'s) own process only, as the OOM killer does, and
        check that its worker processes die with it. A ``hold`` task is landed on it first, so
        a worker that ran on would also leave a ledger run ending after its agent's death."""
        eligible = [a for a in self.rig.agents if a.alive()]
        agent = self._hold_target(eligible) or self.rng.choice(eligible)
        tag, workers = agent.tag, agent.children()
        agent.kill_alone()
        deadline = time.monotonic() + ORPHAN_GRACE_S
        while any(map(pid_alive, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        survivors = [pid for pid in workers if pid_alive(pid)]
        self.rig.orphans += [f"worker {pid} of {tag}" for pid in survivors]
        agent.start()
        self._note(
            kind,
            f"{tag} (SIGKILL to its own pid): {len(survivors)} of its {len(workers)} worker"
            f" processes outlived it by {ORPHAN_GRACE_S:.0f} s; restarted",
        )

    def kill_gateway(self, kind: str) -> None:
        gateway = self.rng.choice(self.rig.gateways)
        tag = gateway.tag
        gateway.kill()
        time.sleep(0.5)
        gateway.start()
        self._note(kind, f"{tag} (SIGKILL to its process group), restarted on the same port")

    def restart_pg(self) -> None:
        assert self.rig.pg is not None
        self.rig.pg.restart()
        self._note("restart_pg", "pg_ctl restart -m fast of the private cluster")

    def _hold_target(self, eligible: Sequence[Proc]) -> Proc | None:
        """Enqueue ``hold`` and ``late`` tasks until an eligible agent begins a hold (busy
        agents elsewhere make the autoscaler give the eligible one containers); return it."""
        tags = {a.tag: a for a in eligible}
        for _ in range(8):
            for kind in ("hold", "late"):
                task = Planned(f"{kind}-{uuid.uuid4().hex[:10]}", kind, True)
                self.rig.extra.append(task)
                enqueue(
                    task,
                    self.rig.gateway_urls(),
                    self.rig.token,
                    self.rig.callback_url,
                    self.rig.accepted,
                )
            deadline = time.monotonic() + 4
            while time.monotonic() < deadline:
                for _, tag in hold_begins(self.rig.ledger):
                    if tag in tags:
                        return tags[tag]
                time.sleep(0.1)
        return None

    def pause_agent(self) -> None:
        eligible = [a for a in self.rig.agents if a.alive() and a is not self.rig.cut_agent]
        agent = self._hold_target(eligible) or self.rng.choice(self._busy_agents() or eligible)
        began = time.time()
        agent.pause()
        time.sleep(STALL_S)
        agent.resume()
        agent.note_stall(began, time.time() + STALL_TAIL_S)
        self._note("pause_agent", f"{agent.tag} SIGSTOP for {STALL_S:.0f} s, then SIGCONT")

    def partition(self) -> None:
        assert self.rig.netns is not None and self.rig.cut_agent is not None
        agent = self.rig.cut_agent
        held = self._hold_target([agent]) is not None
        began = time.time()
        self.rig.netns.cut()
        time.sleep(STALL_S)
        self.rig.netns.reconnect()
        agent.note_stall(began, time.time() + STALL_TAIL_S)
        self._note(
            "partition",
            f"{agent.tag} cut off from PostgreSQL for {STALL_S:.0f} s"
            f" ({'a hold task ran across it' if held else 'no hold task landed on it'})",
        )
