"""``AsyncClient``: the gateway over ``httpx.AsyncClient``, and its task handle ``AsyncTask``.

Requests and answers are built in ``calls.py``; this module only sends, streams and sleeps.
``wait`` follows the task over server-sent events and polls when no stream is available.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from conveyor.errors import ConnectionFailed, HTTPError
from conveyor.sdk.calls import (
    DEFAULT_TIMEOUT_S,
    Call,
    ClientBase,
    SseDecoder,
    TaskFilters,
    TaskHandle,
    batch_call,
    cancel_call,
    decode,
    deploy_files,
    finished,
    http_error,
    outcome,
    poll_intervals,
    polls_instead,
    put_call,
    queue_call,
    queues_call,
    subscribe_call,
    task_call,
    tasks_call,
    wait_timeout,
)
from conveyor.sdk.settings import load_settings
from conveyor.tasks import TaskStatus


class AsyncClient(ClientBase):
    """Talks to a gateway with ``httpx.AsyncClient``. ``transport`` is for tests."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport
        )

    @classmethod
    def from_env(cls) -> Self:
        url, token = load_settings()
        return cls(url, token)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def send(self, call: Call) -> Any:
        with self._reaching():
            response = await self._http.request(
                call.method, call.path, params=call.params, content=call.content,
                headers=call.headers,
            )
        return decode(response)

    async def put(self, name: str, *args: Any, **kwargs: Any) -> AsyncTask:
        answer = await self.send(put_call(name, args, kwargs))
        return AsyncTask(self, answer["task_id"])

    async def put_batch(
        self, name: str, bodies: Iterable[Mapping[str, Any]], idempotency_key: str | None = None
    ) -> list[AsyncTask]:
        answer = await self.send(batch_call(name, bodies, idempotency_key))
        return [AsyncTask(self, task_id) for task_id in answer["task_ids"]]

    async def task(self, task_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = await self.send(task_call(task_id))
        return answer

    async def tasks(self, **filters: Unpack[TaskFilters]) -> dict[str, Any]:
        """``{"data": [task, ...], "next_cursor": …}``, newest first."""
        answer: dict[str, Any] = await self.send(tasks_call(filters))
        return answer

    async def cancel(self, task_ids: str | Iterable[str]) -> dict[str, list[str]]:
        answer: dict[str, list[str]] = await self.send(cancel_call(task_ids))
        return answer

    async def queues(self) -> list[dict[str, Any]]:
        """Queues of the workspace with versions, depth, containers and counts per status."""
        answer: list[dict[str, Any]] = (await self.send(queues_call()))["data"]
        return answer

    async def queue(self, name: str) -> dict[str, Any]:
        """One queue, as in ``queues()``; ``HTTPError`` 404 for an unknown name."""
        answer: dict[str, Any] = await self.send(queue_call(name))
        return answer

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
        call = subscribe_call(task_id)
        decoder = SseDecoder()
        with self._reaching():
            async with self._http.stream(
                call.method, call.path, timeout=httpx.Timeout(self.timeout, read=None)
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise http_error(response)
                async for line in response.aiter_lines():
                    task = decoder.feed(line)
                    if task is not None:
                        yield task

    async def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The task once terminal; ``WaitTimeout`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
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
