"""Every status of DESIGN A2 reached for the reason the contract gives, by real worker
processes, real kills and real clocks, on both store backends."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import orjson

from conveyor.tasks import TaskStatus
from tests.integration.conftest import Harness, error_of, pid_alive, result_of, worker_pids

S = TaskStatus


async def test_complete_with_return_value(harness: Harness) -> None:
    stub = await harness.queue("add", "def handler(a, b=0):\n    return {'sum': a + b}\n")
    await harness.start_agent([stub])
    task_id = await harness.put(stub, 2, b=40)
    view = await harness.wait(task_id)
    assert view.task.status is S.COMPLETE
    assert result_of(view) == {"sum": 42}
    assert view.task.attempt == 1
    assert view.task.container_id.startswith(f"taskqueue-{stub.id[:8]}-")
    t = view.task
    assert t.started_at is not None and t.ended_at is not None
    assert t.created_at <= t.started_at <= t.ended_at


async def test_exception_fails_without_retry(harness: Harness) -> None:
    stub = await harness.queue(
        "boom", "def handler():\n    raise ValueError('bad input')\n", max_retries=3
    )
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is S.FAILED
    assert view.task.attempt == 1
    error = error_of(view)
    assert error["type"].endswith("ValueError") and error["message"] == "bad input"
    assert "Traceback" in error["traceback"]
    assert view.task.ended_at is not None


async def test_retry_for_subclass_then_complete(harness: Harness) -> None:
    source = """
        from conveyor import task_queue

        class Flaky(IOError):
            pass

        @task_queue(name="flaky", retry_for=[IOError], max_retries=2)
        def handler(context):
            if context.attempt == 1:
                raise Flaky("first attempt fails")
            return context.attempt
    """
    stub = await harness.queue("flaky", source, retry_for=("builtins.OSError",), max_retries=2)
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is S.COMPLETE, view.task
    assert result_of(view) == 2
    assert view.task.attempt == 2


async def test_worker_sigkill_is_retried_then_completes(harness: Harness) -> None:
    source = """
        import os, signal

        def handler(context):
            if context.attempt == 1:
                os.kill(os.getpid(), signal.SIGKILL)
            return "survived"
    """
    stub = await harness.queue("crashy", source, max_retries=1)
    await harness.start_agent([stub])
    seen: set[TaskStatus] = set()

    def watch(view: object) -> bool:
        status = view.task.status  # type: ignore[attr-defined]
        seen.add(status)
        return status is S.COMPLETE

    view = await harness.wait(await harness.put(stub), watch)
    assert result_of(view) == "survived"
    assert view.task.attempt == 2


async def test_retries_used_up_fail_with_ended_at(harness: Harness) -> None:
    source = "import os\n\ndef handler():\n    os._exit(3)\n"
    stub = await harness.queue("dies", source, max_retries=1)
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is S.FAILED
    assert view.task.attempt == 2
    assert view.task.ended_at is not None
    assert "exit code 3" in error_of(view)["message"]


async def test_timeout_kills_the_process(harness: Harness, tmp_path: Path) -> None:
    marker = tmp_path / "after-sleep"
    source = f"""
        import time

        def handler():
            time.sleep(3)
            open({str(marker)!r}, "w").write("still alive")
    """
    stub = await harness.queue("sleepy", source, timeout=1, max_retries=3)
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is S.TIMEOUT
    assert view.task.attempt == 1  # a timeout is not retried
    assert view.task.ended_at is not None
    await asyncio.sleep(3.5)
    assert not marker.exists(), "the timed-out attempt kept running"


async def test_cancel_running_kills_within_two_seconds(harness: Harness, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    marker = tmp_path / "finished"
    source = f"""
        import os, time

        def handler():
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            time.sleep(4)
            open({str(marker)!r}, "w").write("done")
            return "should not be recorded"
    """
    stub = await harness.queue("long", source)
    await harness.start_agent([stub])
    task_id = await harness.put(stub)
    await harness.wait(task_id, lambda v: v.task.status is S.RUNNING and pid_file.exists())
    [pid] = worker_pids()  # its host pid (inside its sandbox it is pid 2)
    started = time.monotonic()
    result = await harness.store.cancel(harness.workspace.id, [task_id])
    assert result.cancelled == [task_id]
    while pid_alive(pid) and time.monotonic() - started < 5:
        await asyncio.sleep(0.02)
    assert not pid_alive(pid)
    assert time.monotonic() - started < 2.0
    await asyncio.sleep(4.5)
    view = await harness.wait(task_id)
    assert view.task.status is S.CANCELLED
    assert view.task.result is None
    assert not marker.exists()


async def test_cancel_pending_tasks_never_start(harness: Harness, tmp_path: Path) -> None:
    started_dir = tmp_path / "started"
    started_dir.mkdir()
    source = f"""
        import time

        def handler(n):
            open({str(started_dir)!r} + "/" + str(n), "w").close()
            time.sleep(1.5)
            return n
    """
    stub = await harness.queue("one_at_a_time", source)
    await harness.start_agent([stub])
    first = await harness.put(stub, 0)
    await harness.wait(first, S.RUNNING)
    rest = [await harness.put(stub, n) for n in (1, 2, 3)]
    result = await harness.store.cancel(harness.workspace.id, rest)
    assert sorted(result.cancelled) == sorted(rest)
    assert (await harness.wait(first)).task.status is S.COMPLETE
    await asyncio.sleep(1.0)
    for task_id in rest:
        view = await harness.wait(task_id)
        assert view.task.status is S.CANCELLED
        assert view.task.started_at is None
    assert sorted(os.listdir(started_dir)) == ["0"]


async def test_ttl_expires_waiting_task(harness: Harness) -> None:
    source = "import time\n\ndef handler(s):\n    time.sleep(s)\n"
    stub = await harness.queue("busy", source, ttl=1)
    await harness.start_agent([stub])
    blocker = await harness.put(stub, 3)
    await harness.wait(blocker, S.RUNNING)
    waiting = await harness.put(stub, 0)
    view = await harness.wait(waiting, timeout=10)
    assert view.task.status is S.EXPIRED
    assert view.task.started_at is None and view.task.ended_at is not None


async def test_outputs_are_stored(harness: Harness) -> None:
    source = """
        from conveyor import Output

        def handler():
            Output.from_bytes("hello.txt", b"hello world").save()
            return "ok"
    """
    stub = await harness.queue("writer", source)
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub))
    assert view.task.status is S.COMPLETE
    [output] = view.outputs
    assert output.name == "hello.txt" and output.size == 11
    found = await harness.store.get_output(output.id)
    assert found is not None and found[1] == b"hello world"


async def test_on_start_once_per_process_and_workers_run_in_parallel(
    harness: Harness, tmp_path: Path
) -> None:
    log = tmp_path / "on_start.log"
    source = f"""
        import secrets, time
        from conveyor import task_queue

        PROCESS = secrets.token_hex(8)  # per process (a sandboxed pid is 2 in each)

        def setup():
            with open({str(log)!r}, "a") as f:
                f.write(f"{{PROCESS}}\\n")
            return PROCESS

        @task_queue(name="par", workers=3, on_start=setup)
        def handler(context):
            begin = time.time()
            time.sleep(1.5)
            return [context.on_start_value, PROCESS, begin, time.time()]
    """
    stub = await harness.queue("par", source, workers=3)
    await harness.start_agent([stub])
    ids = [await harness.put(stub) for _ in range(3)]
    views = [await harness.wait(i) for i in ids]
    results = [result_of(v) for v in views]
    assert all(v.task.status is S.COMPLETE for v in views)
    assert all(value == pid for value, pid, _, _ in results)
    assert len({pid for _, pid, _, _ in results}) == 3
    assert max(begin for _, _, begin, _ in results) < min(end for _, _, _, end in results)
    starts = log.read_text().split()
    assert len(starts) == len(set(starts)) == 3  # on_start ran once in each process


async def test_async_handler(harness: Harness) -> None:
    source = """
        import asyncio

        async def handler(x):
            await asyncio.sleep(0.01)
            return x * 2
    """
    stub = await harness.queue("asy", source)
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub, 21))
    assert view.task.status is S.COMPLETE and result_of(view) == 42


async def test_memory_limit_kill_counts_as_crash(harness: Harness) -> None:
    source = """
        import time

        def handler():
            hog = bytearray(400 * 1024 * 1024)
            hog[::4096] = b"x" * len(hog[::4096])
            time.sleep(10)
            return len(hog)
    """
    stub = await harness.queue("hog", source, memory=150, max_retries=0)
    await harness.start_agent([stub])
    view = await harness.wait(await harness.put(stub), timeout=30)
    assert view.task.status is S.FAILED
    assert "memory limit of 150 MiB" in error_of(view)["message"]


async def test_autoscale_up_to_max_and_back_to_zero(harness: Harness) -> None:
    from conveyor.queue_config import AutoscalerConfig

    source = "import time\n\ndef handler():\n    time.sleep(1.0)\n"
    stub = await harness.queue(
        "scaled",
        source,
        keep_warm_seconds=1,
        autoscaler=AutoscalerConfig(max_containers=3, tasks_per_container=1),
    )
    await harness.start_agent([stub])
    ids = [await harness.put(stub) for _ in range(6)]
    peak = 0
    deadline = time.monotonic() + 40
    views = []
    while time.monotonic() < deadline:
        peak = max(peak, await harness.store.active_containers(stub.id))
        views = [await harness.store.get_task(i) for i in ids]
        if all(v is not None and v.task.status is S.COMPLETE for v in views):
            break
        await asyncio.sleep(0.05)
    assert all(v is not None and v.task.status is S.COMPLETE for v in views)
    assert len({v.task.container_id for v in views if v}) == 3
    assert peak == 3
    deadline = time.monotonic() + 20
    while await harness.store.active_containers(stub.id) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert await harness.store.active_containers(stub.id) == 0


async def test_late_result_of_cancelled_attempt_is_not_recorded(harness: Harness) -> None:
    # finish from an attempt that was cancelled while the handler kept running is refused
    source = "import time\n\ndef handler():\n    time.sleep(0.5)\n    return 'late'\n"
    stub = await harness.queue("late", source)
    await harness.start_agent([stub])
    task_id = await harness.put(stub)
    await harness.wait(task_id, S.RUNNING)
    await harness.store.cancel(harness.workspace.id, [task_id])
    await asyncio.sleep(1.5)
    view = await harness.wait(task_id)
    assert view.task.status is S.CANCELLED and view.task.result is None
    assert orjson.loads(view.stub.config)["name"] == "late"


async def test_containers_reserve_cpu_within_the_agent_capacity(harness: Harness) -> None:
    from conveyor.queue_config import AutoscalerConfig

    source = "import time\n\ndef handler():\n    time.sleep(0.3)\n"
    stub = await harness.queue(
        "cpu_bound",
        source,
        cpu=1.5,
        keep_warm_seconds=5,
        autoscaler=AutoscalerConfig(max_containers=3, tasks_per_container=1),
    )
    await harness.start_agent([stub], cpu_capacity=2.0)  # room for one container of 1.5 CPU
    ids = [await harness.put(stub) for _ in range(4)]
    views = [await harness.wait(i) for i in ids]
    assert all(v.task.status is S.COMPLETE for v in views)
    assert len({v.task.container_id for v in views}) == 1
