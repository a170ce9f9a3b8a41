"""The store interface: everything the gateway and the agents need, and nothing more.

Two backends implement it (``sqlite.py``, ``postgres.py``) and pass one contract suite
(``tests/store/``). Every status write is a guarded transition derived from
``conveyor.tasks.TRANSITIONS``; writes from an attempt are fenced by ``TaskRecord.fence``.
Methods that depend on time take ``now`` (float seconds) so tests can step time; ``None``
means the wall clock. Driver errors never escape: they become ``StoreError`` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from conveyor.server.store.records import (
    AgentInfo,
    AttemptInfo,
    Callback,
    CancelResult,
    Event,
    LogLimits,
    LogLine,
    LogPage,
    LogStream,
    NewTask,
    Outcome,
    OutputInfo,
    Pruned,
    QueueSummary,
    Revoked,
    ScheduleInfo,
    SecretInfo,
    ServerKeys,
    Stub,
    StubLoad,
    StubType,
    SweepReport,
    TaskFilter,
    TaskRecord,
    TaskView,
    Tick,
    Workspace,
)

#: An idempotency key is honoured this long.
IDEMPOTENCY_WINDOW_S = 24 * 3600.0
#: A container whose heartbeat is older than this is not live.
CONTAINER_STALE_S = 15.0
DEFAULT_MAX_OUTPUT_BYTES = 64 * 1024 * 1024
#: A dashboard session lasts this long after sign-in.
DASHBOARD_SESSION_TTL_S = 12 * 3600.0


class Subscription(Protocol):
    """Change notifications delivered to this process."""

    async def get(self, timeout: float | None = None) -> Event | None:
        """Next event, or None after ``timeout`` seconds without one."""

    def deliver_to(self, handler: Callable[[Event], None]) -> None:
        """Hand every event to ``handler`` as it is published instead of queuing it for
        ``get`` (``handler`` must not raise or block)."""

    def close(self) -> None: ...


class Store(Protocol):
    #: Outputs larger than this are refused with ``OutputTooLarge``.
    max_output_bytes: int

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and apply pending migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""

    async def schema_version(self) -> int: ...

    # -- workspaces and tokens ---------------------------------------------------------------
    async def ensure_workspace(self, name: str) -> Workspace:
        """Return the workspace called ``name``, creating it (with a signing secret) if needed."""

    async def get_workspace(self, workspace_id: str) -> Workspace | None: ...

    async def create_token(self, workspace_id: str, token: str | None = None) -> str:
        """Store a token (hashed) for the workspace and return it in clear. ``token`` fixes it."""

    async def authenticate(self, token: str) -> Workspace | None: ...

    async def create_operator_token(self, token: str | None = None) -> str:
        """A token bound to no workspace: it reads ``/metrics`` of all of them and
        authenticates no workspace route (kept apart from workspace tokens)."""

    async def is_operator_token(self, token: str) -> bool: ...

    async def revoke_token(self, token: str) -> Revoked:
        """Delete a workspace token and every dashboard session made from it."""

    async def revoke_workspace_tokens(self, workspace_name: str) -> Revoked | None:
        """Delete every token of the workspace called ``workspace_name`` and every dashboard
        session of it; None when there is no such workspace."""

    # -- dashboard sessions ------------------------------------------------------------------
    async def create_dashboard_session(
        self, token: str, ttl_s: float = DASHBOARD_SESSION_TTL_S, now: float | None = None
    ) -> str | None:
        """A new session id (in clear; stored hashed) for a valid workspace ``token``, lasting
        ``ttl_s``; None when the token is not a workspace token. Expired sessions are swept."""

    async def dashboard_session(self, session: str, now: float | None = None) -> Workspace | None:
        """The workspace of a session not expired whose token still exists, else None."""

    async def delete_dashboard_session(self, session: str) -> None: ...

    # -- server keys (signed output links) -----------------------------------------------------
    async def server_keys(self) -> ServerKeys:
        """The current key and the previous one; the first call on a new store creates the key,
        and callers racing to do so all get the same one."""

    async def rotate_server_key(self) -> ServerKeys:
        """Make a new current key; the current one becomes the previous, older ones are gone."""

    # -- workspace secrets (DESIGN A9): ciphertext only, encrypted outside the store --------------
    async def put_secret(
        self, workspace_id: str, name: str, ciphertext: str, now: float | None = None
    ) -> SecretInfo:
        """Create the secret, or replace its ciphertext (``updated_at`` moves, not
        ``created_at``)."""

    async def list_secrets(self, workspace_id: str) -> list[SecretInfo]:
        """The workspace's secrets by name: names and dates, never ciphertext."""

    async def delete_secret(self, workspace_id: str, name: str) -> bool:
        """False when the workspace has no such secret."""

    async def secret_ciphertexts(
        self, workspace_id: str, names: Collection[str]
    ) -> dict[str, str]:
        """The ciphertext of each of ``names`` the workspace has (the others are absent)."""

    async def any_secret(self) -> tuple[str, str] | None:
        """The name and ciphertext of one secret of any workspace; None when there is none
        (a process checks at start that it has a key, and the right one)."""

    async def rewrap_secrets(self, rewrap: Callable[[str, str], str]) -> int:
        """Replace every secret's ciphertext with ``rewrap(name, ciphertext)``, all in one
        transaction (an exception from ``rewrap`` changes nothing); returns how many."""

    # -- stubs, deployments, code objects ----------------------------------------------------
    async def deploy_stub(
        self, workspace_id: str, name: str, config: Mapping[str, Any], code: bytes
    ) -> Stub:
        """Make the next deployment version of ``name``: type ``taskqueue/deployment``, or
        ``schedule/deployment`` for a config with ``when``. ``ConfigError`` when the name
        holds versions of the other kind."""

    async def upsert_serve_stub(
        self, workspace_id: str, name: str, config: Mapping[str, Any], code: bytes
    ) -> Stub:
        """The ``taskqueue/serve`` (``schedule/serve``) stub of ``name``: created with the next
        version on first call; later calls with a changed config update it in place and bump
        ``config_version``."""

    async def get_stub(self, stub_id: str) -> Stub | None:
        """Malformed ids answer None."""

    async def resolve_stub(
        self, workspace_id: str, name: str, version: int | None = None, *, cached: bool = False
    ) -> Stub | None:
        """The stub of ``name`` at ``version``; None: where the unversioned route goes, the
        latest active version (every version stopped: the latest). ``cached``: for an enqueue,
        which re-checks a look-up of the route as it writes (``StaleRoute``), so the store may
        answer from a recent one."""

    async def list_stubs(
        self, workspace_id: str | None = None, types: Sequence[StubType] | None = None
    ) -> list[Stub]:
        """All stubs (of one workspace), oldest first."""

    async def get_object(self, object_id: int) -> bytes:
        """A code object's bytes; ``NotFound`` if unknown."""

    async def set_stub_active(
        self, workspace_id: str, stub_id: str, active: bool, now: float | None = None
    ) -> Stub:
        """Stop (``active`` False) or start a version of the workspace; the stub as it is now.
        A stopped version takes no new tasks (``VersionStopped``) and the unversioned route
        goes past it. ``NotFound`` for a stub of no such id in the workspace."""

    async def delete_stub(self, workspace_id: str, stub_id: str, now: float | None = None) -> int:
        """Delete a version of the workspace with its tasks and what hangs off them; how many
        tasks went. ``VersionBusy`` (nothing changed) while any of its tasks is not terminal;
        ``NotFound`` for a stub of no such id in the workspace."""

    async def replay(
        self,
        workspace_id: str,
        task_ids: Sequence[str],
        latest: bool = False,
        now: float | None = None,
    ) -> list[str]:
        """Enqueue each finished task's input again, on its version (``latest``: on the version
        its queue's unversioned route goes to), with ``replay_of`` set; the new ids in order.
        All or nothing: ``NotFound`` for an id of no task of the workspace,
        ``InvalidTransition`` for a task not finished, ``VersionStopped`` and
        ``PendingLimitExceeded`` as an enqueue."""

    # -- tasks ---------------------------------------------------------------------------------
    async def enqueue(
        self, stub: Stub, tasks: Sequence[NewTask], max_pending: int, now: float | None = None
    ) -> list[str]:
        """Insert PENDING tasks, all or nothing, in order; return their ids. A task with
        ``run_at`` is not claimed before then, and its ttl counts from then.

        Raises ``PendingLimitExceeded`` when PENDING+RETRY+RUNNING tasks of the stub plus the
        new ones would exceed ``max_pending`` (checked atomically with the insert). A task whose
        idempotency key was used on the same queue (stub name) of the workspace within 24 h is
        not created; the earlier id is returned in its place. ``ttl_s``, ``max_retries``,
        ``timeout_s`` and ``retry_backoff_s`` are copied from the stub config so a task keeps
        the policy it was enqueued under.
        """

    async def claim(
        self, stub_id: str, container_id: str, limit: int, lease_s: float, now: float | None = None
    ) -> list[TaskRecord]:
        """Move up to ``limit`` runnable tasks (PENDING or RETRY whose ``runnable_at`` has come:
        a delayed task's start time, a retry's backoff) of the stub to RUNNING, in the order
        they became runnable: ``attempt`` and ``fence`` +1, ``started_at`` set on the first
        attempt, ``container_id`` set, lease until ``now + lease_s``. Concurrent claimers
        never get the same task."""

    async def heartbeat(
        self,
        container_id: str,
        running: Sequence[tuple[str, int]],
        lease_s: float,
        now: float | None = None,
    ) -> list[str]:
        """Mark the container live and extend the leases of its ``(task_id, fence)`` attempts.
        Returns the ids of those attempts that are no longer RUNNING at that fence (cancelled,
        or taken over): the agent must kill their processes."""

    async def finish(self, outcomes: Sequence[Outcome], now: float | None = None) -> list[bool]:
        """Write attempt outcomes (guarded: RUNNING at the outcome's fence). Returns, per
        outcome, whether it was applied; a refused one changes nothing, outputs included.
        Terminal transitions write the callback outbox row in the same transaction.
        Raises ``OutputTooLarge`` (writing nothing) if an output exceeds ``max_output_bytes``."""

    async def release(self, running: Sequence[tuple[str, int]], now: float | None = None) -> int:
        """Give RUNNING attempts back to the queue (status RETRY, runnable at once) without
        counting them as attempts: used by an agent that drains. Returns how many moved."""

    async def cancel(
        self, workspace_id: str, task_ids: Sequence[str], now: float | None = None
    ) -> CancelResult:
        """Cancel PENDING, RETRY and RUNNING tasks of the workspace. Ids of other workspaces
        and malformed ids are ``not_found``. Emits a ``cancel`` event for each RUNNING one."""

    async def sweep(self, now: float | None = None) -> SweepReport:
        """Expired leases → RETRY (retries left, with backoff) or FAILED; PENDING/RETRY past
        their ttl → EXPIRED; containers silent for ``CONTAINER_STALE_S`` removed. Safe to run
        from many processes at once."""

    async def prune(self, ended_before: float, limit: int = 200) -> Pruned:
        """Delete up to ``limit`` finished tasks whose ``ended_at`` is before ``ended_before``
        (oldest first; fewer when their log lines are many) with everything that hangs off
        them, in one short transaction; what went (nothing: none is left). A task whose
        callback is still to be delivered is kept. Safe to run from many processes at once."""

    # -- queries -------------------------------------------------------------------------------
    async def get_task(self, task_id: str, workspace_id: str | None = None) -> TaskView | None:
        """None for unknown, malformed, or (with ``workspace_id``) foreign ids."""

    async def list_tasks(
        self,
        workspace_id: str,
        filter: TaskFilter,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[TaskView], str | None]:
        """Newest first; returns the page and the cursor of the next one (None at the end).
        A malformed cursor raises ``ValueError``."""

    async def queue_summaries(
        self, workspace_id: str, name: str | None = None
    ) -> list[QueueSummary]: ...

    async def stub_loads(self, stub_ids: Sequence[str], now: float | None = None) -> list[StubLoad]:
        """Runnable and running counts per stub, for the autoscaler."""

    # -- schedules (DESIGN A10) -----------------------------------------------------------------
    async def schedules(self, workspace_id: str | None = None) -> list[ScheduleInfo]:
        """Every schedule (of one workspace): per name, the latest version that makes ticks
        (not stopped), with the name's last tick."""

    async def make_tick(
        self, stub: Stub, tick_at: int, catch_up: bool, now: float | None = None
    ) -> Tick | None:
        """Make the tick ``tick_at`` of the schedule ``stub`` and, in the same transaction,
        its task (no arguments, ``run_at`` the tick): the tick made, its ``task_id`` None when
        the pending limit refused the task. None, writing nothing, when the schedule has this
        tick or a later one already (made by any maker, from any version), or ``stub`` is no
        longer the version that ticks (a later one, stopped, gone)."""

    # -- seeing into a task (DESIGN A8) ---------------------------------------------------------
    async def task_input(self, task_id: str, workspace_id: str) -> str | None:
        """The task's input, JSON text ``{"args": [...], "kwargs": {...}}``; None for unknown,
        malformed or foreign ids."""

    async def task_attempts(self, task_id: str, workspace_id: str) -> list[AttemptInfo] | None:
        """Every attempt of the task, oldest first: the ended ones as recorded, then the one
        running (``outcome`` None); None for unknown, malformed or foreign ids."""

    async def append_logs(
        self,
        lines: Sequence[LogLine],
        limits: LogLimits,
        closing: Sequence[tuple[str, int]] = (),
        *,
        dropped: Mapping[str, int] | None = None,
    ) -> None:
        """Keep ``lines`` (in order) within each task's ``limits``; count the rest as dropped,
        with ``dropped`` more per task (lines the agent did not send, already past them).
        For each ``(task_id, attempt)`` in ``closing`` (that attempt has ended) whose task
        dropped lines not yet told, add the marker line ``[conveyor: N more lines dropped]``.
        Emits one ``logs`` event per task written to."""

    async def task_logs(
        self,
        task_id: str,
        workspace_id: str,
        *,
        attempt: int | None = None,
        stream: LogStream | None = None,
        cursor: str | None = None,
        limit: int = 1000,
    ) -> LogPage | None:
        """The task's kept lines after ``cursor``, oldest first; None for unknown, malformed or
        foreign ids. A malformed cursor raises ``ValueError``."""

    # -- containers ----------------------------------------------------------------------------
    async def register_container(
        self, container_id: str, stub_id: str, agent_id: str, now: float | None = None
    ) -> None: ...

    async def deregister_container(self, container_id: str) -> None: ...

    async def active_containers(self, stub_id: str, now: float | None = None) -> int: ...

    # -- agents --------------------------------------------------------------------------------
    async def agent_alive(
        self,
        agent_id: str,
        runs_deployed: bool,
        stub_ids: Collection[str],
        now: float | None = None,
        *,
        builds: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        """Record (or renew) a live agent, what it runs and, by stub id, the build state of
        those stubs' images; prunes agents long silent."""

    async def agent_gone(self, agent_id: str) -> None: ...

    async def live_agents(self, now: float | None = None) -> list[AgentInfo]:
        """Agents heard from within ``AGENT_STALE_S``."""

    # -- outputs -------------------------------------------------------------------------------
    async def get_output(self, output_id: str) -> tuple[OutputInfo, bytes] | None: ...

    # -- callbacks outbox ----------------------------------------------------------------------
    async def claim_callbacks(
        self,
        limit: int,
        lease_s: float,
        now: float | None = None,
        *,
        per_workspace: int | None = None,
    ) -> list[Callback]:
        """Undelivered callbacks that are due, leased for ``lease_s`` so one sender has each;
        with ``per_workspace``, at most that many leased at once per workspace."""

    async def callback_delivered(self, callback_id: str, now: float | None = None) -> None: ...

    async def callback_failed(
        self, callback_id: str, error: str, retry_at: float | None, now: float | None = None
    ) -> None:
        """Record a failed delivery; ``retry_at`` None gives up."""

    async def request_warmup(self, stub_id: str) -> None:
        """Emit a ``warmup`` event so an agent starts a container for the stub."""

    # -- notifications -------------------------------------------------------------------------
    def subscribe(self) -> Subscription:
        """Events of this store. PostgreSQL: from every process (LISTEN/NOTIFY); SQLite: from
        this process only (other processes poll)."""
