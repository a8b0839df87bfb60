"""A fair job queue: round-robin across members, with per-member caps.

One member's ten jobs do not starve another member's one: each turn goes to the next member
in rotation who has a job waiting and is under the running cap. Positions shown to members
follow the same rotation, so "position 2" means two dispatches ahead.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from bot.core.errors import QueueClosed, QueueFull

T = TypeVar("T")


@dataclass
class _Member(Generic[T]):
    waiting: deque[tuple[Hashable, T]] = field(default_factory=deque)
    running: int = 0


class FairQueue(Generic[T]):
    def __init__(self, *, max_running_per_user: int, max_queued_per_user: int) -> None:
        self._max_running = max_running_per_user
        self._max_queued = max_queued_per_user
        # Insertion order is the rotation: a member who just got a turn moves to the end.
        self._members: OrderedDict[Hashable, _Member[T]] = OrderedDict()
        self._changed = asyncio.Condition()
        self._closed = False

    def __len__(self) -> int:
        return sum(len(m.waiting) for m in self._members.values())

    async def push(self, member: Hashable, job_id: Hashable, item: T) -> None:
        if self._closed:
            raise QueueClosed()
        state = self._members.setdefault(member, _Member())
        if len(state.waiting) >= self._max_queued:
            raise QueueFull(self._max_queued)
        state.waiting.append((job_id, item))
        await self._notify()

    def waiting_for(self, member: Hashable) -> int:
        state = self._members.get(member)
        return len(state.waiting) if state else 0

    async def cancel(self, job_id: Hashable) -> T | None:
        """Remove a waiting job; None when it is not waiting (already started or unknown)."""
        for state in self._members.values():
            for entry in state.waiting:
                if entry[0] == job_id:
                    state.waiting.remove(entry)
                    await self._notify()
                    return entry[1]
        return None

    async def next(self) -> tuple[Hashable, Hashable, T]:
        """Wait for the next runnable job; returns (member, job_id, item) and counts it running."""
        async with self._changed:
            while True:
                picked = self._pick()
                if picked is not None:
                    return picked
                if self._closed:
                    raise QueueClosed()
                await self._changed.wait()

    async def finished(self, member: Hashable) -> None:
        """A job of ``member`` stopped running (success or not)."""
        state = self._members.get(member)
        if state is not None:
            state.running -= 1
            if state.running == 0 and not state.waiting:
                del self._members[member]
        await self._notify()

    def positions(self) -> dict[Hashable, int]:
        """1-based dispatch position of every waiting job, following the rotation."""
        order = []
        for turn, (_, state) in enumerate(self._members.items()):
            for depth, (job_id, _) in enumerate(state.waiting):
                order.append((depth, turn, job_id))
        return {job_id: i + 1 for i, (_, _, job_id) in enumerate(sorted(order))}

    def drain(self) -> list[T]:
        """Close the queue and take every waiting job out (at shutdown)."""
        self._closed = True
        items = [item for state in self._members.values() for _, item in state.waiting]
        for state in self._members.values():
            state.waiting.clear()
        return items

    async def close(self) -> None:
        self._closed = True
        await self._notify()

    def _pick(self) -> tuple[Hashable, Hashable, T] | None:
        for member, state in self._members.items():
            if state.waiting and state.running < self._max_running:
                job_id, item = state.waiting.popleft()
                state.running += 1
                self._members.move_to_end(member)
                return member, job_id, item
        return None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()
