"""What both clients share: requests (``Call`` and its builders), answers (``decode``,
``outcome``, server-sent events) and the connection's settings (``ClientBase``).

``AsyncClient`` (``async_client.py``) and its thin sync twin ``Client`` (``client.py``) build
requests and decode answers only with these; each adds the one transport-specific step (send,
stream, sleep).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypedDict, TypeVar
from urllib.parse import quote

import httpx
import orjson

from conveyor.error_info import ErrorInfo
from conveyor.errors import (
    ConfigError,
    ConnectionFailed,
    HTTPError,
    NotConfigured,
    TaskCancelled,
    TaskExpired,
    TaskFailed,
    TaskTimedOut,
    WaitTimeout,
)
from conveyor.sdk.settings import DEFAULT_URL
from conveyor.tasks import TaskStatus, is_terminal

if TYPE_CHECKING:
    from conveyor.direct import Producer

DEFAULT_TIMEOUT_S = 30.0
#: Polling intervals when no event stream is available: start fast, back off to the cap.
POLL_START_S, POLL_CAP_S = 0.1, 2.0
#: Longest pause before a dropped log stream is opened again.
RETRY_CAP_S = 2.0


def with_scheme(url: str) -> str:
    """``localhost:8001`` → ``http://localhost:8001``: a gateway URL without scheme is HTTP."""
    return url if "://" in url else "http://" + url


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
    """``put(name, *args, **kwargs)``; the keywords ``idempotency_key``, ``callback_url``,
    ``delay`` and ``run_at`` are the call's options (headers and the body key of the same
    names), not handler arguments."""
    kwargs = dict(kwargs)
    key = kwargs.pop("idempotency_key", None)
    callback_url = kwargs.pop("callback_url", None)
    start = start_headers(kwargs.pop("delay", None), kwargs.pop("run_at", None))
    body: dict[str, Any] = {"args": list(args), "kwargs": kwargs}
    if callback_url is not None:
        body["callback_url"] = callback_url
    return Call("POST", _queue_path(name), body=body, headers={**_key_header(key), **start})


def batch_call(
    name: str,
    bodies: Iterable[Mapping[str, Any]],
    idempotency_key: str | None = None,
    delay: float | None = None,
    run_at: datetime | str | None = None,
) -> Call:
    """Each body is ``{"args": [...], "kwargs": {...}}`` or keyword arguments at top level;
    ``delay`` or ``run_at`` puts off every task of the batch."""
    body = {"tasks": [dict(b) for b in bodies]}
    headers = {**_key_header(idempotency_key), **start_headers(delay, run_at)}
    return Call("POST", _queue_path(name) + "/batch", body=body, headers=headers)


def start_headers(delay: object, run_at: object) -> dict[str, str]:
    """``Conveyor-Delay`` (seconds) or ``Conveyor-Run-At`` (an aware ``datetime``, or ISO 8601
    text) for a task that must not start before then; ``ConfigError`` for a value of the
    wrong type (the gateway checks the rest)."""
    if delay is not None and run_at is not None:
        raise ConfigError("give delay or run_at, not both")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, int | float):
            raise ConfigError(f"delay must be seconds (a number), got {delay!r}")
        return {"Conveyor-Delay": f"{delay:.6f}"}
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise ConfigError(
                "run_at must carry a time zone, e.g. datetime.now(UTC) + timedelta(minutes=30)"
            )
        return {"Conveyor-Run-At": run_at.isoformat()}
    if run_at is not None:
        if not isinstance(run_at, str):
            raise ConfigError(f"run_at must be a datetime or ISO 8601 text, got {run_at!r}")
        return {"Conveyor-Run-At": run_at}
    return {}


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


def input_call(task_id: str) -> Call:
    return Call("GET", f"/v2/task/{quote(task_id, safe='')}/input")


def attempts_call(task_id: str) -> Call:
    return Call("GET", f"/v2/task/{quote(task_id, safe='')}/attempts")


class LogFilters(TypedDict, total=False):
    """Filters of ``task_logs()``."""

    attempt: int
    stream: str
    cursor: str
    limit: int


def logs_call(task_id: str, filters: LogFilters) -> Call:
    params = {name: str(value) for name, value in filters.items() if value is not None}
    return Call("GET", f"/v2/task/{quote(task_id, safe='')}/logs", params=params)


def cancel_call(task_ids: str | Iterable[str]) -> Call:
    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    return Call("DELETE", "/v2/task/cancel/", body={"task_ids": ids})


class ReplayFilters(TypedDict, total=False):
    """The filter of ``replay()`` when no ids are given (finished tasks only)."""

    status: str | Iterable[str]
    queue: str
    stub_id: str
    created_after: str
    created_before: str


def replay_call(
    task_ids: str | Iterable[str] | None, filters: ReplayFilters, latest: bool
) -> Call:
    """``POST /v2/task/replay/`` by ids, else by ``filters``; ``latest``: onto the version the
    queue's unversioned route goes to."""
    body: dict[str, Any]
    if task_ids is not None:
        body = {"task_ids": [task_ids] if isinstance(task_ids, str) else list(task_ids)}
    else:
        body = dict(filters)
        status = filters.get("status")
        if status is not None and not isinstance(status, str):
            body["status"] = list(status)
    params = {"version": "latest"} if latest else {}
    return Call("POST", "/v2/task/replay/", params=params, body=body)


def deployments_call() -> Call:
    return Call("GET", "/v2/deployment/")


def deployment_call(stub_id: str, action: str) -> Call:
    """``stop``, ``start`` or ``delete`` a version."""
    path = f"/v2/deployment/{quote(stub_id, safe='')}"
    if action == "delete":
        return Call("DELETE", path)
    return Call("POST", f"{path}/{action}")


def enqueue_call(name: str, body: Mapping[str, Any]) -> Call:
    """``body`` sent as it is, as ``curl`` would (``put_call`` builds ``args``/``kwargs``)."""
    return Call("POST", _queue_path(name), body=dict(body))


def queues_call() -> Call:
    return Call("GET", "/v2/taskqueue/")


def schedules_call() -> Call:
    return Call("GET", "/v2/schedule/")


def queue_call(name: str) -> Call:
    return Call("GET", f"/v2/taskqueue/{quote(name, safe='')}")


def secret_put_call(name: str, value: str) -> Call:
    return Call("POST", "/v2/secret/", body={"name": name, "value": value})


def secrets_call() -> Call:
    return Call("GET", "/v2/secret/")


def secret_delete_call(name: str) -> Call:
    return Call("DELETE", f"/v2/secret/{quote(name, safe='')}")


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


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """One server-sent event: its name (``message`` when unnamed), data and last id."""

    name: str
    data: str
    id: str | None


class SseReader:
    """Server-sent events, line by line → each whole event."""

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerEvent | None:
        if line.startswith(":"):
            return None
        if line:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                self._event = value
            elif name == "data":
                self._data.append(value)
            elif name == "id":
                self._id = value
            return None
        if not self._data:  # as a browser does: no data, no event
            self._event = ""
            return None
        event = ServerEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event, self._data = "", []
        return event


class SseDecoder:
    """Server-sent events, line by line → the task JSON of each ``status`` event."""

    def __init__(self) -> None:
        self._reader = SseReader()

    def feed(self, line: str) -> dict[str, Any] | None:
        event = self._reader.feed(line)
        if event is None or event.name != "status":
            return None
        task = orjson.loads(event.data)
        return task if isinstance(task, dict) else None


class LogFollower:
    """Following a task's log stream across dropped connections: the id of the last line
    received (sent again as ``Last-Event-ID``, so the gateway resumes right after it), whether
    the stream said the task ended, and how many connections in a row brought nothing."""

    #: Connections in a row that end without a line (nor a ping) before giving up.
    MAX_RETRIES = 5

    def __init__(self, task_id: str, cursor: str | None) -> None:
        self.task_id = task_id
        self.last_id = cursor
        self.ended = False
        self._retries = 0
        self._reader = SseReader()

    def call(self) -> Call:
        """The request of the next connection."""
        self._reader = SseReader()
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        return Call("GET", f"/v2/task/{quote(self.task_id, safe='')}/logs/stream",
                    headers=headers)

    def feed(self, line: str) -> dict[str, Any] | None:
        """The log line a stream line completes, if any."""
        self._retries = 0
        event = self._reader.feed(line)
        if event is None:
            return None
        if event.name == "end":
            self.ended = True
        elif event.name == "log":
            self.last_id = event.id
            item: dict[str, Any] = orjson.loads(event.data)
            return item
        return None

    def pause(self, failure: ConnectionFailed | None) -> float:
        """Seconds to wait before connecting again after a stream ended before the task's end
        (on ``failure``, or closed early); raises once that happened too often in a row."""
        self._retries += 1
        if self._retries > self.MAX_RETRIES:
            raise failure or ConnectionFailed(
                f"the log stream of task {self.task_id} keeps closing early"
            )
        return min(RETRY_CAP_S, 0.2 * 2.0 ** (self._retries - 1))


def _queue_path(name: str) -> str:
    return "/taskqueue/" + quote(name, safe="/")


def _key_header(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key else {}


def finished(task: Mapping[str, Any]) -> bool:
    return is_terminal(TaskStatus(task["status"]))


def polls_instead(exc: ConnectionFailed | HTTPError) -> bool:
    """Whether ``wait`` falls back to polling after its event stream failed with ``exc``: not
    for 401 or 404, which polling would meet again."""
    return not (isinstance(exc, HTTPError) and exc.status_code in (401, 404))


def poll_intervals() -> Iterator[float]:
    interval = POLL_START_S
    while True:
        yield interval
        interval = min(POLL_CAP_S, interval * 2)


def wait_timeout(task_id: str, timeout: float | None) -> WaitTimeout:
    return WaitTimeout(f"task {task_id} did not finish within {timeout} s")


class ClientBase:
    """The connection settings of both clients. With ``store`` (a store URL) ``put``,
    ``put_batch``, ``task``, ``cancel`` and ``wait`` go through the store itself
    (``conveyor.direct``, loaded here on first use); ``url`` then only names the gateway of the
    other calls and of output links."""

    def __init__(
        self, url: str | None, token: str | None, timeout: float, store: str | None = None
    ) -> None:
        if url is None and store is None:
            raise NotConfigured("give the gateway's url, or store= to enqueue through the store")
        self.url = with_scheme(url or DEFAULT_URL).rstrip("/")
        self.token = token
        self.timeout = timeout
        self.store = store
        self._direct: Producer | None = None
        if store is not None:
            from conveyor.direct import producer_for  # only a store user pays for the store

            self._direct = producer_for(store, token)

    def _producer(self) -> Producer:
        if self._direct is None:
            raise NotConfigured("within() enqueues through the store: make the client with store=")
        return self._direct

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """A transport failure inside is ``ConnectionFailed``, naming the gateway."""
        try:
            yield
        except httpx.TransportError as exc:
            raise ConnectionFailed(
                f"cannot reach the conveyor gateway at {self.url}: {exc}"
            ) from exc


C = TypeVar("C", bound=ClientBase)


class TaskHandle(Generic[C]):
    """What ``Task`` and ``AsyncTask`` share: the client, the id, the task JSON last read."""

    def __init__(self, client: C, task_id: str) -> None:
        self.client = client
        self.id = task_id
        self.data: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"
