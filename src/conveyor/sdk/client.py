"""HTTP clients of a conveyor gateway: ``AsyncClient`` and its thin sync twin ``Client``.

Both build requests and decode answers with the same helpers below; each only adds the one
transport-specific step (send, stream, sleep). Task handles (``Task``, ``AsyncTask``) wait
for results over server-sent events and fall back to polling when a stream is unavailable.
"""

from __future__ import annotations

import asyncio
import os
import time
import tomllib
import warnings
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack
from urllib.parse import quote

import httpx
import orjson

from conveyor.error_info import ErrorInfo
from conveyor.errors import (
    ConnectionFailed,
    HTTPError,
    NotConfigured,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskTimedOut,
    WaitTimeout,
)
from conveyor.tasks import TaskStatus, is_terminal

ENV_URL = "CONVEYOR_URL"
ENV_TOKEN = "CONVEYOR_TOKEN"
#: The gateway when none is configured: where ``conveyor serve`` listens by default.
DEFAULT_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT_S = 30.0
#: Polling intervals when no event stream is available: start fast, back off to the cap.
POLL_START_S, POLL_CAP_S = 0.1, 2.0


def config_path() -> Path:
    return Path.home() / ".conveyor" / "config.toml"


def load_settings(
    environ: Mapping[str, str] | None = None,
    path: Path | None = None,
    *,
    url: str | None = None,
    token: str | None = None,
) -> tuple[str, str]:
    """``(url, token)``: each the one given (a ``conveyor`` flag), else CONVEYOR_URL /
    CONVEYOR_TOKEN, else ``~/.conveyor/config.toml`` (``url = "…"``, ``token = "…"``), else
    ``DEFAULT_URL``, key by key. No token anywhere is ``NotConfigured``. The one place both
    ``Client.from_env`` and the command line decide where the gateway is."""
    environ = os.environ if environ is None else environ
    path = config_path() if path is None else path
    file_values: dict[str, Any] = {}
    if path.is_file():
        try:
            file_values = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
            raise NotConfigured(f"cannot read {path}: {exc}") from None
    url = url or environ.get(ENV_URL) or file_values.get("url") or DEFAULT_URL
    token = token or environ.get(ENV_TOKEN) or file_values.get("token")
    if not isinstance(url, str):
        raise NotConfigured(f"url in {path} must be a string")
    if not isinstance(token, str) or not token:
        raise NotConfigured(
            f'no token: set {ENV_TOKEN} (or pass --token to the conveyor command) or put '
            f'token = "…" in {path}'
        )
    return url, token


def with_scheme(url: str) -> str:
    """``localhost:8001`` → ``http://localhost:8001``: a gateway URL without scheme is HTTP."""
    return url if "://" in url else "http://" + url


# -- requests and answers, shared by both clients ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request to the gateway."""

    method: str
    path: str
    params: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def content(self) -> bytes | None:
        return None if self.body is None else orjson.dumps(self.body)


def put_call(name: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Call:
    """``put(name, *args, **kwargs)``; ``idempotency_key`` and ``callback_url`` keywords are
    the header and the body key of the same names, not handler arguments."""
    kwargs = dict(kwargs)
    key = kwargs.pop("idempotency_key", None)
    callback_url = kwargs.pop("callback_url", None)
    body: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
    if callback_url is not None:
        body["callback_url"] = callback_url
    return Call("POST", _queue_path(name), body=body, headers=_key_header(key))


def batch_call(
    name: str, bodies: Iterable[Mapping[str, Any]], idempotency_key: str | None = None
) -> Call:
    """Each body is ``{"args": [...], "kwargs": {...}}`` or keyword arguments at top level."""
    body = {"tasks": [dict(b) for b in bodies]}
    headers = _key_header(idempotency_key)
    return Call("POST", _queue_path(name) + "/batch", body=body, headers=headers)


def task_call(task_id: str) -> Call:
    return Call("GET", f"/v2/task/{quote(task_id, safe='')}/")


class TaskFilters(TypedDict, total=False):
    """Filters of ``tasks()``; timestamps are ISO 8601 strings."""

    status: str | Iterable[str]
    queue: str
    stub_id: str
    container_id: str
    created_after: str
    created_before: str
    limit: int
    cursor: str


def tasks_call(filters: TaskFilters) -> Call:
    params: dict[str, str] = {}
    for name, value in filters.items():
        if value is None:
            continue
        if name == "status" and not isinstance(value, str):
            value = ",".join(value)  # type: ignore[arg-type]
        params[name] = str(value)
    return Call("GET", "/v2/task/", params=params)


def cancel_call(task_ids: str | Iterable[str]) -> Call:
    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    return Call("DELETE", "/v2/task/cancel/", body={"task_ids": ids})


def enqueue_call(name: str, body: Mapping[str, Any]) -> Call:
    """``body`` sent as it is, as ``curl`` would (``put_call`` builds ``args``/``kwargs``)."""
    return Call("POST", _queue_path(name), body=dict(body))


def queues_call() -> Call:
    return Call("GET", "/v2/taskqueue/")


def queue_call(name: str) -> Call:
    return Call("GET", f"/v2/taskqueue/{quote(name, safe='')}")


def deploy_files(config_json: str, bundle: bytes) -> dict[str, tuple[str, bytes, str]]:
    """The multipart fields of ``POST /v2/deployment/``: the QueueConfig JSON and the zip."""
    return {
        "config": ("config.json", config_json.encode(), "application/json"),
        "code": ("code.zip", bundle, "application/zip"),
    }


def subscribe_call(task_id: str) -> Call:
    return Call("GET", f"/v2/task/{quote(task_id, safe='')}/subscribe")


class ConveyorWarning(UserWarning):
    """The gateway accepted a call and warned about it (``Conveyor-Warning``), e.g. that no
    agent runs the version a task was enqueued on, so it waits."""


def decode(response: httpx.Response) -> Any:
    """The JSON answer, or ``HTTPError`` with the server's message. A ``Conveyor-Warning``
    header becomes a :class:`ConveyorWarning`."""
    if response.is_success:
        warning = response.headers.get("conveyor-warning")
        if warning:
            warnings.warn(warning, ConveyorWarning, stacklevel=4)
        return orjson.loads(response.content) if response.content else None
    raise http_error(response)


def http_error(response: httpx.Response) -> HTTPError:
    try:
        message = orjson.loads(response.content)["error"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        message = response.text or response.reason_phrase
    return HTTPError(response.status_code, str(message))


def outcome(task: Mapping[str, Any]) -> Any:
    """The result of a terminal task, or the ``TaskError`` its status stands for."""
    status = TaskStatus(task["status"])
    if status is TaskStatus.COMPLETE:
        return task.get("result")
    error = ErrorInfo.from_dict(task["error"]) if task.get("error") else None
    detail = f": {error.type}: {error.message}" if error else ""
    errors = {
        TaskStatus.FAILED: TaskFailed, TaskStatus.TIMEOUT: TaskTimedOut,
        TaskStatus.CANCELLED: TaskCancelled, TaskStatus.EXPIRED: TaskExpired,
    }
    raise errors[status](f"task {task['id']} {status.value.lower()}{detail}", task=dict(task))


class SseDecoder:
    """Server-sent events, line by line → the task JSON of each ``status`` event."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        if line.startswith(":"):
            return None
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            return None
        event, data = self._event or "message", "\n".join(self._data)
        self._event, self._data = "", []
        if event != "status" or not data:
            return None
        task = orjson.loads(data)
        return task if isinstance(task, dict) else None


class _Base:
    def __init__(self, url: str, token: str | None, timeout: float) -> None:
        self.url = with_scheme(url).rstrip("/")
        self.token = token
        self.timeout = timeout

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _connection_failed(self, exc: httpx.TransportError) -> ConnectionFailed:
        return ConnectionFailed(f"cannot reach the conveyor gateway at {self.url}: {exc}")


def _queue_path(name: str) -> str:
    return "/taskqueue/" + quote(name, safe="/")


def _key_header(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _wait_timeout(task_id: str, timeout: float | None) -> WaitTimeout:
    return WaitTimeout(f"task {task_id} did not finish within {timeout} s")


# -- async ---------------------------------------------------------------------------------------


class AsyncClient(_Base):
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
        try:
            response = await self._http.request(
                call.method, call.path, params=call.params, content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc
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
        try:
            response = await self._http.post(
                "/v2/deployment/", files=deploy_files(config_json, bundle)
            )
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc
        answer: dict[str, Any] = decode(response)
        return answer

    async def subscribe(self, task_id: str) -> AsyncIterator[dict[str, Any]]:
        """Task JSON at each status change, ending after the terminal one."""
        call = subscribe_call(task_id)
        decoder = SseDecoder()
        try:
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
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc

    async def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The task once terminal; ``WaitTimeout`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                try:
                    async for task in self.subscribe(task_id):
                        if is_terminal(TaskStatus(task["status"])):
                            return task
                except (ConnectionFailed, HTTPError) as exc:
                    if isinstance(exc, HTTPError) and exc.status_code in (401, 404):
                        raise
                return await self._poll(task_id)
        except TimeoutError:
            raise _wait_timeout(task_id, timeout) from None

    async def _poll(self, task_id: str) -> dict[str, Any]:
        interval = POLL_START_S
        while True:
            task = await self.task(task_id)
            if is_terminal(TaskStatus(task["status"])):
                return task
            await asyncio.sleep(interval)
            interval = min(POLL_CAP_S, interval * 2)


class AsyncTask:
    """A handle on one enqueued task, for ``AsyncClient``."""

    def __init__(self, client: AsyncClient, task_id: str) -> None:
        self.client = client
        self.id = task_id
        self.data: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"AsyncTask({self.id!r})"

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


# -- sync: the same calls over httpx.Client ----------------------------------------------------


class Client(_Base):
    """Talks to a gateway with ``httpx.Client``; same methods as ``AsyncClient``."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout)
        self._http = httpx.Client(
            base_url=self.url, headers=self._headers(), timeout=timeout, transport=transport
        )

    @classmethod
    def from_env(cls) -> Self:
        url, token = load_settings()
        return cls(url, token)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def send(self, call: Call) -> Any:
        try:
            response = self._http.request(
                call.method, call.path, params=call.params, content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc
        return decode(response)

    def put(self, name: str, *args: Any, **kwargs: Any) -> Task:
        return Task(self, self.send(put_call(name, args, kwargs))["task_id"])

    def put_batch(
        self, name: str, bodies: Iterable[Mapping[str, Any]], idempotency_key: str | None = None
    ) -> list[Task]:
        answer = self.send(batch_call(name, bodies, idempotency_key))
        return [Task(self, task_id) for task_id in answer["task_ids"]]

    def task(self, task_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self.send(task_call(task_id))
        return answer

    def tasks(self, **filters: Unpack[TaskFilters]) -> dict[str, Any]:
        """``{"data": [task, ...], "next_cursor": …}``, newest first."""
        answer: dict[str, Any] = self.send(tasks_call(filters))
        return answer

    def cancel(self, task_ids: str | Iterable[str]) -> dict[str, list[str]]:
        answer: dict[str, list[str]] = self.send(cancel_call(task_ids))
        return answer

    def queues(self) -> list[dict[str, Any]]:
        """Queues of the workspace with versions, depth, containers and counts per status."""
        answer: list[dict[str, Any]] = self.send(queues_call())["data"]
        return answer

    def queue(self, name: str) -> dict[str, Any]:
        """One queue, as in ``queues()``; ``HTTPError`` 404 for an unknown name."""
        answer: dict[str, Any] = self.send(queue_call(name))
        return answer

    def deploy(self, config_json: str, bundle: bytes) -> dict[str, Any]:
        """Upload a code bundle: ``{"stub_id", "name", "version", "url"}`` of the new version."""
        try:
            response = self._http.post("/v2/deployment/", files=deploy_files(config_json, bundle))
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc
        answer: dict[str, Any] = decode(response)
        return answer

    def subscribe(self, task_id: str, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Task JSON at each status change; ``timeout`` bounds each wait for the next line."""
        call = subscribe_call(task_id)
        decoder = SseDecoder()
        try:
            with self._http.stream(
                call.method, call.path, timeout=httpx.Timeout(self.timeout, read=timeout)
            ) as response:
                if not response.is_success:
                    response.read()
                    raise http_error(response)
                for line in response.iter_lines():
                    task = decoder.feed(line)
                    if task is not None:
                        yield task
        except httpx.TransportError as exc:
            raise self._connection_failed(exc) from exc

    def wait(self, task_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The task once terminal; ``WaitTimeout`` after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            for task in self.subscribe(task_id, timeout):
                if is_terminal(TaskStatus(task["status"])):
                    return task
                if deadline is not None and time.monotonic() >= deadline:
                    raise _wait_timeout(task_id, timeout)
        except (ConnectionFailed, HTTPError) as exc:
            if isinstance(exc, HTTPError) and exc.status_code in (401, 404):
                raise
            if deadline is not None and time.monotonic() >= deadline:
                raise _wait_timeout(task_id, timeout) from None
        interval = POLL_START_S
        while True:
            task = self.task(task_id)
            if is_terminal(TaskStatus(task["status"])):
                return task
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                raise _wait_timeout(task_id, timeout)
            time.sleep(interval if remaining is None else min(interval, remaining))
            interval = min(POLL_CAP_S, interval * 2)


class Task:
    """A handle on one enqueued task, for ``Client``."""

    def __init__(self, client: Client, task_id: str) -> None:
        self.client = client
        self.id = task_id
        self.data: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Task({self.id!r})"

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
