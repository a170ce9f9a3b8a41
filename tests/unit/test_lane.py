"""The store's lane: calls made while its thread is busy go over together, and fail alone."""

from __future__ import annotations

import asyncio
import threading

import pytest

from conveyor.server.store.lane import Lane, LaneClosed


async def test_calls_made_while_busy_share_the_next_hop() -> None:
    lane = Lane("test-lane")
    gate = threading.Event()
    try:
        first = asyncio.ensure_future(lane.call(lambda: gate.wait(10)))
        await asyncio.sleep(0.05)  # the first hop is now blocked on the gate
        rest = [asyncio.ensure_future(lane.call(lambda i=i: i * i)) for i in range(10)]
        await asyncio.sleep(0.05)
        assert lane.hops == 1
        gate.set()
        assert await first is True
        assert await asyncio.gather(*rest) == [i * i for i in range(10)]
        assert lane.hops == 2
    finally:
        gate.set()
        lane.shutdown()


async def test_a_failing_call_fails_alone() -> None:
    lane = Lane("test-lane")
    gate = threading.Event()

    def boom() -> int:
        raise ValueError("boom")

    try:
        blocker = asyncio.ensure_future(lane.call(lambda: gate.wait(10)))
        await asyncio.sleep(0.05)
        calls = [lane.call(lambda: 1), lane.call(boom), lane.call(lambda: 3)]
        gate.set()
        results = await asyncio.gather(*calls, return_exceptions=True)
        await blocker
        assert results[0] == 1 and results[2] == 3
        assert isinstance(results[1], ValueError)
    finally:
        gate.set()
        lane.shutdown()


async def test_a_closed_lane_refuses_calls() -> None:
    lane = Lane("test-lane")
    assert await lane.call(lambda: 7) == 7
    lane.shutdown()
    with pytest.raises(LaneClosed):
        await lane.call(lambda: 7)


def test_a_loop_closed_mid_hop_does_not_wedge_the_lane() -> None:
    lane = Lane("test-lane")
    gate = threading.Event()
    left: list[asyncio.Future[bool]] = []

    async def start() -> None:
        left.append(asyncio.ensure_future(lane.call(lambda: gate.wait(10))))
        await asyncio.sleep(0.05)

    try:
        asyncio.run(start())  # the loop closes with that hop still on the thread
        gate.set()

        async def again() -> int:
            return await asyncio.wait_for(lane.call(lambda: 5), 5)

        assert asyncio.run(again()) == 5
    finally:
        gate.set()
        lane.shutdown()
