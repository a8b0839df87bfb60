"""The fair queue: rotation across members, caps, cancel and positions."""

from __future__ import annotations

import asyncio

import pytest

from bot.core.errors import QueueClosed, QueueFull
from bot.core.queue import FairQueue


def make(running: int = 1, queued: int = 20) -> FairQueue[str]:
    return FairQueue(max_running_per_user=running, max_queued_per_user=queued)


async def test_one_members_ten_jobs_do_not_starve_another() -> None:
    q = make(running=10)
    for i in range(10):
        await q.push("alice", f"a{i}", f"a{i}")
    await q.push("bob", "b0", "b0")
    order = [(await q.next())[1] for _ in range(11)]
    assert order.index("b0") == 1
    assert order[0] == "a0" and order[2:] == [f"a{i}" for i in range(1, 10)]


async def test_positions_follow_the_rotation() -> None:
    q = make()
    for i in range(3):
        await q.push("alice", f"a{i}", "x")
    await q.push("bob", "b0", "x")
    await q.push("carol", "c0", "x")
    assert q.positions() == {"a0": 1, "b0": 2, "c0": 3, "a1": 4, "a2": 5}


async def test_running_cap_holds_back_a_member() -> None:
    q = make(running=1)
    await q.push("alice", "a0", "a0")
    await q.push("alice", "a1", "a1")
    assert (await q.next())[1] == "a0"
    waiter = asyncio.create_task(q.next())
    await asyncio.sleep(0.01)
    assert not waiter.done()  # alice is at her cap
    await q.push("bob", "b0", "b0")
    assert (await asyncio.wait_for(waiter, 1))[1] == "b0"
    await q.finished("alice")
    assert (await asyncio.wait_for(q.next(), 1))[1] == "a1"


async def test_queued_cap_refuses_with_a_message() -> None:
    q = make(queued=2)
    await q.push("alice", 1, "x")
    await q.push("alice", 2, "x")
    with pytest.raises(QueueFull, match="2 jobs waiting"):
        await q.push("alice", 3, "x")
    await q.push("bob", 4, "x")  # others are not affected


async def test_cancel_only_removes_waiting_jobs() -> None:
    q = make()
    await q.push("alice", "a0", "first")
    await q.push("alice", "a1", "second")
    assert await q.cancel("a1") == "second"
    assert await q.cancel("a1") is None
    await q.next()
    assert await q.cancel("a0") is None  # already running
    assert len(q) == 0


async def test_drain_and_close() -> None:
    q = make()
    await q.push("alice", "a0", "x")
    waiter_q = make()
    waiter = asyncio.create_task(waiter_q.next())
    await asyncio.sleep(0)
    assert q.drain() == ["x"]
    with pytest.raises(QueueClosed):
        await q.push("alice", "a1", "y")
    await waiter_q.close()
    with pytest.raises(QueueClosed):
        await asyncio.wait_for(waiter, 1)
