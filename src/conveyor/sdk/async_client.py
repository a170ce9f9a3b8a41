"""``AsyncClient``: the gateway over ``httpx.AsyncClient``, and its task handle ``AsyncTask``.

Requests and answers are built in ``calls.py``; this module only sends, streams and sleeps.
``wait`` follows the task over server-sent events and polls when no stream is available.

``AsyncClient(store=...)`` enqueues and reads through the store (``conveyor.direct``), each
call in a worker thread (the direct producer blocks); ``within(conn)`` takes a
``psycopg.AsyncConnection`` and runs the enqueue in its transaction, on this event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
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


class AsyncClient(ClientBase):
    """Talks to a gateway with ``httpx.AsyncClient``. ``transport`` is for tests."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        store: str | None = None,
    ) -> None:
        super().__init__(url, token, timeout, store)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport
        )

    @classmethod
    def from_env(cls) -> Self:
        url, token = load_settings()
        return cls(url, token, store=load_store())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._direct is not None:
            await asyncio.to_thread(self._direct.close)

    async def send(self, call: Call) -> Any:
        with self._reaching():
            response = await self._http.request(
                call.method, call.path, params=call.params, content=call.content,
                headers=call.headers,
            )
        return decode(response)

    async def put(self, name: str, *args: Any, **kwargs: Any) -> AsyncTask:
        call = put_call(name, args, kwargs)
        if self._direct is not None:
            task_id = await asyncio.to_thread(self._direct.put, name, call.body, call.headers)
            return AsyncTask(self, task_id)
        answer = await self.send(call)
        return AsyncTask(self, answer["task_id"])

    async def put_batch(
        self,
        name: str,
        bodies: Iterable[Mapping[str, Any]],
        idempotency_key: str | None = None,
        delay: float | None = None,
        run_at: datetime | str | None = None,
    ) -> list[AsyncTask]:
        call = batch_call(name, bodies, idempotency_key, delay, run_at)
        if self._direct is not None:
            ids = await asyncio.to_thread(self._direct.put_batch, name, call.body, call.headers)
        else:
            ids = (await self.send(call))["task_ids"]
        return [AsyncTask(self, task_id) for task_id in ids]

    def within(self, conn: Any) -> AsyncWithin:
        """``put`` and ``put_batch`` inside the transaction of ``conn`` (a
        ``psycopg.AsyncConnection``), never committed or rolled back here. Needs ``store=``."""
        self._producer()
        return AsyncWithin(self, conn)

    async def task(self, task_id: str) -> dict[str, Any]:
        if self._direct is not None:
            return await asyncio.to_thread(self._direct.task, task_id, self.url)
        answer: dict[str, Any] = await self.send(task_call(task_id))
        return answer

    async def tasks(self, **filters: Unpack[TaskFilters]) -> dict[str, Any]:
        """``{"data": [task, ...], "next_cursor": …}``, newest first."""
        answer: dict[str, Any] = await self.send(tasks_call(filters))
        return answer

    async def cancel(self, task_ids: str | Iterable[str]) -> dict[str, list[str]]:
        call = cancel_call(task_ids)
        if self._direct is not None:
            return await asyncio.to_thread(self._direct.cancel, call.body["task_ids"])
        answer: dict[str, list[str]] = await self.send(call)
        return answer

    async def task_input(self, task_id: str) -> dict[str, Any]:
        """``{"args": [...], "kwargs": {...}}``: what the task's handler is called with."""
        answer: dict[str, Any] = await self.send(input_call(task_id))
        return answer

    async def task_attempts(self, task_id: str) -> list[dict[str, Any]]:
        """The task's attempts, oldest first."""
        answer: list[dict[str, Any]] = (await self.send(attempts_call(task_id)))["data"]
        return answer

    async def task_logs(self, task_id: str, **filters: Unpack[LogFilters]) -> dict[str, Any]:
        """``{"data": [line, ...], "next_cursor": …}``: a page of the task's lines, oldest
        first; pass ``next_cursor`` as ``cursor`` for the next page."""
        answer: dict[str, Any] = await self.send(logs_call(task_id, filters))
        return answer

    async def follow_logs(
        self, task_id: str, cursor: str | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Each line of the task after ``cursor``, as it is stored, until the task has ended
        and its last line is sent. A dropped connection is opened again and resumes after the
        last line received."""
        follower = LogFollower(task_id, cursor)
        while not follower.ended:
            failure = None
            try:
                async for line in self._event_lines(follower.call()):
                    item = follower.feed(line)
                    if item is not None:
                        yield item
            except ConnectionFailed as exc:
                failure = exc
            if not follower.ended:
                await asyncio.sleep(follower.pause(failure))

    async def replay(
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
        answer: list[str] = (await self.send(replay_call(task_ids, filters, latest)))["task_ids"]
        return answer

    async def deployments(self) -> list[dict[str, Any]]:
        """Every version of the workspace's queues: ``stub_id``, ``name``, ``version``,
        ``type``, ``active``, ``created_at``, ``agents``."""
        answer: list[dict[str, Any]] = (await self.send(deployments_call()))["data"]
        return answer

    async def stop_deployment(self, stub_id: str) -> dict[str, Any]:
        """Stop a version: it takes no new tasks, its containers stop once idle."""
        answer: dict[str, Any] = await self.send(deployment_call(stub_id, "stop"))
        return answer

    async def start_deployment(self, stub_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.send(deployment_call(stub_id, "start"))
        return answer

    async def delete_deployment(self, stub_id: str) -> dict[str, Any]:
        """Delete a version with its tasks; ``HTTPError`` 409 while any is unfinished."""
        answer: dict[str, Any] = await self.send(deployment_call(stub_id, "delete"))
        return answer

    async def queues(self) -> list[dict[str, Any]]:
        """Queues of the workspace with versions, depth, containers and counts per status."""
        answer: list[dict[str, Any]] = (await self.send(queues_call()))["data"]
        return answer

    async def schedules(self) -> list[dict[str, Any]]:
        """Schedules of the workspace: the version that ticks, its next ticks, the last."""
        answer: list[dict[str, Any]] = (await self.send(schedules_call()))["data"]
        return answer

    async def queue(self, name: str) -> dict[str, Any]:
        """One queue, as in ``queues()``; ``HTTPError`` 404 for an unknown name."""
        answer: dict[str, Any] = await self.send(queue_call(name))
        return answer

    async def create_secret(self, name: str, value: str) -> dict[str, Any]:
        """Create a workspace secret or give it a new value: ``{"name", "created_at",
        "updated_at"}`` (never the value). Containers started afterwards get it."""
        answer: dict[str, Any] = await self.send(secret_put_call(name, value))
        return answer

    async def secrets(self) -> list[dict[str, Any]]:
        """The workspace's secrets, by name: names and dates, never values."""
        answer: list[dict[str, Any]] = (await self.send(secrets_call()))["data"]
        return answer

    async def delete_secret(self, name: str) -> None:
        """``HTTPError`` 404 for an unknown name."""
        await self.send(secret_delete_call(name))

    async def deploy(self, config_json: str, bundle: bytes) -> dict[str, Any]:
        """Upload a code bundle: ``{"stub_id", "name", "version", "url"}`` of the new version."""
        with self._reaching():
            response = await self._http.post(
                "/v2/deployment/", files=deploy_files(config_json, bundle)
            )
        answer: dict[str, Any] = decode(response)
        return answer

    async def subscribe(self, task_id: str) -> AsyncIterator[dict[str, Any]]:
        """Task JSON at each status change, ending after the terminal one."""
        decoder = SseDecoder()
        async for line in self._event_lines(subscribe_call(task_id)):
            task = decoder.feed(line)
            if task is not None:
                yield task

    async def _event_lines(self, call: Call) -> AsyncIterator[str]:
        """The lines of an event stream; ``HTTPError`` if the gateway refuses it."""
        with self._reaching():
            async with self._http.stream(
                call.method, call.path, headers=call.headers,
                timeout=httpx.Timeout(self.timeout, read=None),
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise http_error(response)
                async for line in response.aiter_lines():
                    yield line

    async def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The task once terminal; ``WaitTimeout`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                if self._direct is not None:  # no event stream without the gateway
                    return await self._poll(task_id)
                try:
                    async for task in self.subscribe(task_id):
                        if finished(task):
                            return task
                except (ConnectionFailed, HTTPError) as exc:
                    if not polls_instead(exc):
                        raise
                return await self._poll(task_id)
        except TimeoutError:
            raise wait_timeout(task_id, timeout) from None

    async def _poll(self, task_id: str) -> dict[str, Any]:
        intervals = poll_intervals()
        while True:
            task = await self.task(task_id)
            if finished(task):
                return task
            await asyncio.sleep(next(intervals))


class AsyncWithin:
    """``AsyncClient.within(conn)``: enqueues bound to the caller's ``AsyncConnection``."""

    def __init__(self, client: AsyncClient, conn: Any) -> None:
        self.client = client
        self.conn = conn

    async def put(self, name: str, *args: Any, **kwargs: Any) -> AsyncTask:
        call = put_call(name, args, kwargs)
        producer = self.client._producer()
        (task_id,) = await producer.put_async(name, call.body, call.headers, self.conn)
        return AsyncTask(self.client, task_id)

    async def put_batch(
        self,
        name: str,
        bodies: Iterable[Mapping[str, Any]],
        idempotency_key: str | None = None,
        delay: float | None = None,
        run_at: datetime | str | None = None,
    ) -> list[AsyncTask]:
        call = batch_call(name, bodies, idempotency_key, delay, run_at)
        producer = self.client._producer()
        ids = await producer.put_batch_async(name, call.body, call.headers, self.conn)
        return [AsyncTask(self.client, task_id) for task_id in ids]


class AsyncTask(TaskHandle[AsyncClient]):
    """A handle on one enqueued task, for ``AsyncClient``."""

    async def refresh(self) -> dict[str, Any]:
        self.data = await self.client.task(self.id)
        return self.data

    async def status(self) -> TaskStatus:
        return TaskStatus((await self.refresh())["status"])

    async def result(self, timeout: float | None = None) -> Any:
        self.data = await self.client.wait(self.id, timeout)
        return outcome(self.data)

    async def cancel(self) -> dict[str, list[str]]:
        return await self.client.cancel([self.id])

    async def outputs(self) -> list[dict[str, Any]]:
        outputs: list[dict[str, Any]] = (await self.refresh())["outputs"]
        return outputs
