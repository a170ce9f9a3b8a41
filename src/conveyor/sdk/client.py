"""``Client``: the gateway over ``httpx.Client``, the thin sync twin of ``AsyncClient``
(``async_client.py``), and its task handle ``Task``.

Requests and answers are built in ``calls.py``; this module only sends, streams and sleeps.
``wait`` follows the task over server-sent events and polls when no stream is available.

``Client(store=...)`` enqueues and reads through the store instead (``conveyor.direct``):
``put``, ``put_batch``, ``task``, ``cancel`` and ``wait`` (which then polls), and ``within(conn)``
to enqueue inside the caller's own PostgreSQL transaction. The rest still uses the gateway.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from conveyor.errors import ConnectionFailed, HTTPError
from conveyor.sdk.calls import (
    DEFAULT_TIMEOUT_S,
    Call,
    ClientBase,
    LogFilters,
    LogFollower,
    ReplayFilters,
    SseDecoder,
    TaskFilters,
    TaskHandle,
    attempts_call,
    batch_call,
    cancel_call,
    decode,
    deploy_files,
    deployment_call,
    deployments_call,
    finished,
    http_error,
    input_call,
    logs_call,
    outcome,
    poll_intervals,
    polls_instead,
    put_call,
    queue_call,
    queues_call,
    replay_call,
    schedules_call,
    secret_delete_call,
    secret_put_call,
    secrets_call,
    subscribe_call,
    task_call,
    tasks_call,
    wait_timeout,
)
from conveyor.sdk.settings import load_settings, load_store
from conveyor.tasks import TaskStatus


class Client(ClientBase):
    """Talks to a gateway with ``httpx.Client``; same methods as ``AsyncClient``."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
        *,
        store: str | None = None,
    ) -> None:
        super().__init__(url, token, timeout, store)
        self._transport = transport
        self._http_client: httpx.Client | None = None
        if store is None:
            self._http_client = self._new_http()

    def _new_http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers=self._headers(), timeout=self.timeout,
            transport=self._transport,
        )

    @property
    def _http(self) -> httpx.Client:
        """Made on first use with a store: enqueues through it need no HTTP client."""
        if self._http_client is None:
            self._http_client = self._new_http()
        return self._http_client

    @classmethod
    def from_env(cls) -> Self:
        """The gateway and token of ``load_settings``; with ``CONVEYOR_STORE`` set, enqueues
        and reads go through that store."""
        url, token = load_settings()
        return cls(url, token, store=load_store())

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._http_client is not None:
            self._http_client.close()
        if self._direct is not None:
            self._direct.close()

    def send(self, call: Call) -> Any:
        with self._reaching():
            response = self._http.request(
                call.method, call.path, params=call.params, content=call.content,
                headers=call.headers,
            )
        return decode(response)

    def put(self, name: str, *args: Any, **kwargs: Any) -> Task:
        call = put_call(name, args, kwargs)
        if self._direct is not None:
            return Task(self, self._direct.put(name, call.body, call.headers))
        return Task(self, self.send(call)["task_id"])

    def put_batch(
        self,
        name: str,
        bodies: Iterable[Mapping[str, Any]],
        idempotency_key: str | None = None,
        delay: float | None = None,
        run_at: datetime | str | None = None,
    ) -> list[Task]:
        call = batch_call(name, bodies, idempotency_key, delay, run_at)
        if self._direct is not None:
            ids = self._direct.put_batch(name, call.body, call.headers)
        else:
            ids = self.send(call)["task_ids"]
        return [Task(self, task_id) for task_id in ids]

    def within(self, conn: Any) -> Within:
        """``put`` and ``put_batch`` inside the transaction of ``conn`` (a ``psycopg.Connection``
        on the client's PostgreSQL store): nothing is committed or rolled back here, so the
        tasks exist if and only if the caller commits. Needs ``store=``."""
        self._producer()
        return Within(self, conn)

    def task(self, task_id: str) -> dict[str, Any]:
        if self._direct is not None:
            return self._direct.task(task_id, self.url)
        answer: dict[str, Any] = self.send(task_call(task_id))
        return answer

    def tasks(self, **filters: Unpack[TaskFilters]) -> dict[str, Any]:
        """``{"data": [task, ...], "next_cursor": …}``, newest first."""
        answer: dict[str, Any] = self.send(tasks_call(filters))
        return answer

    def cancel(self, task_ids: str | Iterable[str]) -> dict[str, list[str]]:
        call = cancel_call(task_ids)
        if self._direct is not None:
            return self._direct.cancel(call.body["task_ids"])
        answer: dict[str, list[str]] = self.send(call)
        return answer

    def task_input(self, task_id: str) -> dict[str, Any]:
        """``{"args": [...], "kwargs": {...}}``: what the task's handler is called with."""
        answer: dict[str, Any] = self.send(input_call(task_id))
        return answer

    def task_attempts(self, task_id: str) -> list[dict[str, Any]]:
        """The task's attempts, oldest first."""
        answer: list[dict[str, Any]] = self.send(attempts_call(task_id))["data"]
        return answer

    def task_logs(self, task_id: str, **filters: Unpack[LogFilters]) -> dict[str, Any]:
        """``{"data": [line, ...], "next_cursor": …}``: a page of the task's lines, oldest
        first; pass ``next_cursor`` as ``cursor`` for the next page."""
        answer: dict[str, Any] = self.send(logs_call(task_id, filters))
        return answer

    def follow_logs(self, task_id: str, cursor: str | None = None) -> Iterator[dict[str, Any]]:
        """Each line of the task after ``cursor``, as it is stored, until the task has ended
        and its last line is sent. A dropped connection is opened again and resumes after the
        last line received."""
        follower = LogFollower(task_id, cursor)
        while not follower.ended:
            failure = None
            try:
                for line in self._event_lines(follower.call(), read_timeout=None):
                    item = follower.feed(line)
                    if item is not None:
                        yield item
            except ConnectionFailed as exc:
                failure = exc
            if not follower.ended:
                time.sleep(follower.pause(failure))

    def replay(
        self,
        task_ids: str | Iterable[str] | None = None,
        *,
        latest: bool = False,
        **filters: Unpack[ReplayFilters],
    ) -> list[str]:
        """Enqueue finished tasks again, by id or else by filter (``status``, ``queue``,
        ``stub_id``, ``created_after``, ``created_before``), on their own version (``latest``:
        on the version the queue's unversioned route goes to); the new tasks' ids. Each new
        task's ``replay_of`` names its original."""
        answer: list[str] = (self.send(replay_call(task_ids, filters, latest)))["task_ids"]
        return answer

    def deployments(self) -> list[dict[str, Any]]:
        """Every version of the workspace's queues: ``stub_id``, ``name``, ``version``,
        ``type``, ``active``, ``created_at``, ``agents``."""
        answer: list[dict[str, Any]] = (self.send(deployments_call()))["data"]
        return answer

    def stop_deployment(self, stub_id: str) -> dict[str, Any]:
        """Stop a version: it takes no new tasks, its containers stop once idle."""
        answer: dict[str, Any] = self.send(deployment_call(stub_id, "stop"))
        return answer

    def start_deployment(self, stub_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.send(deployment_call(stub_id, "start"))
        return answer

    def delete_deployment(self, stub_id: str) -> dict[str, Any]:
        """Delete a version with its tasks; ``HTTPError`` 409 while any is unfinished."""
        answer: dict[str, Any] = self.send(deployment_call(stub_id, "delete"))
        return answer

    def queues(self) -> list[dict[str, Any]]:
        """Queues of the workspace with versions, depth, containers and counts per status."""
        answer: list[dict[str, Any]] = self.send(queues_call())["data"]
        return answer

    def schedules(self) -> list[dict[str, Any]]:
        """Schedules of the workspace: the version that ticks, its next ticks, the last."""
        answer: list[dict[str, Any]] = self.send(schedules_call())["data"]
        return answer

    def queue(self, name: str) -> dict[str, Any]:
        """One queue, as in ``queues()``; ``HTTPError`` 404 for an unknown name."""
        answer: dict[str, Any] = self.send(queue_call(name))
        return answer

    def create_secret(self, name: str, value: str) -> dict[str, Any]:
        """Create a workspace secret or give it a new value: ``{"name", "created_at",
        "updated_at"}`` (never the value). Containers started afterwards get it."""
        answer: dict[str, Any] = self.send(secret_put_call(name, value))
        return answer

    def secrets(self) -> list[dict[str, Any]]:
        """The workspace's secrets, by name: names and dates, never values."""
        answer: list[dict[str, Any]] = self.send(secrets_call())["data"]
        return answer

    def delete_secret(self, name: str) -> None:
        """``HTTPError`` 404 for an unknown name."""
        self.send(secret_delete_call(name))

    def deploy(self, config_json: str, bundle: bytes) -> dict[str, Any]:
        """Upload a code bundle: ``{"stub_id", "name", "version", "url"}`` of the new version."""
        with self._reaching():
            response = self._http.post("/v2/deployment/", files=deploy_files(config_json, bundle))
        answer: dict[str, Any] = decode(response)
        return answer

    def subscribe(self, task_id: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Task JSON at each status change; ``timeout`` bounds each wait for the next line."""
        decoder = SseDecoder()
        for line in self._event_lines(subscribe_call(task_id), read_timeout=timeout):
            task = decoder.feed(line)
            if task is not None:
                yield task

    def _event_lines(self, call: Call, read_timeout: float | None) -> Iterator[str]:
        """The lines of an event stream; ``HTTPError`` if the gateway refuses it."""
        with self._reaching(), self._http.stream(
            call.method, call.path, headers=call.headers,
            timeout=httpx.Timeout(self.timeout, read=read_timeout),
        ) as response:
            if not response.is_success:
                response.read()
                raise http_error(response)
            yield from response.iter_lines()

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The task once terminal; ``WaitTimeout`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._direct is not None:  # no event stream without the gateway
            return self._poll(task_id, timeout, deadline)
        try:
            for task in self.subscribe(task_id, timeout):
                if finished(task):
                    return task
                if deadline is not None and time.monotonic() >= deadline:
                    raise wait_timeout(task_id, timeout)
        except (ConnectionFailed, HTTPError) as exc:
            if not polls_instead(exc):
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise wait_timeout(task_id, timeout) from None
        return self._poll(task_id, timeout, deadline)

    def _poll(self, task_id: str, timeout: float | None, deadline: float | None) -> dict[str, Any]:
        intervals = poll_intervals()
        while True:
            task = self.task(task_id)
            if finished(task):
                return task
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise wait_timeout(task_id, timeout)
            interval = next(intervals)
            time.sleep(interval if remaining is None else min(interval, remaining))


class Within:
    """``Client.within(conn)``: enqueues bound to the caller's connection and transaction."""

    def __init__(self, client: Client, conn: Any) -> None:
        self.client = client
        self.conn = conn

    def put(self, name: str, *args: Any, **kwargs: Any) -> Task:
        call = put_call(name, args, kwargs)
        producer = self.client._producer()
        return Task(self.client, producer.put(name, call.body, call.headers, self.conn))

    def put_batch(
        self,
        name: str,
        bodies: Iterable[Mapping[str, Any]],
        idempotency_key: str | None = None,
        delay: float | None = None,
        run_at: datetime | str | None = None,
    ) -> list[Task]:
        call = batch_call(name, bodies, idempotency_key, delay, run_at)
        ids = self.client._producer().put_batch(name, call.body, call.headers, self.conn)
        return [Task(self.client, task_id) for task_id in ids]


class Task(TaskHandle[Client]):
    """A handle on one enqueued task, for ``Client``."""

    def refresh(self) -> dict[str, Any]:
        self.data = self.client.task(self.id)
        return self.data

    def status(self) -> TaskStatus:
        return TaskStatus(self.refresh()["status"])

    def result(self, timeout: float | None = None) -> Any:
        """The handler's return value once the task completes; raises ``TaskFailed``,
        ``TaskTimedOut``, ``TaskCancelled`` or ``TaskExpired`` for those statuses and
        ``WaitTimeout`` when ``timeout`` seconds pass first."""
        self.data = self.client.wait(self.id, timeout)
        return outcome(self.data)

    def cancel(self) -> dict[str, list[str]]:
        return self.client.cancel([self.id])

    def outputs(self) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = self.refresh()["outputs"]
        return outputs
