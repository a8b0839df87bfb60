"""An event-loop lag monitor: a task that sleeps ``interval`` and records how late it woke.

A coroutine that runs CPU work inline (a Pillow decode, a big ``json.dumps``, a long loop over
jobs) holds the loop, and every other coroutine — the gateway heartbeat, a member's ``defer``
— waits behind it. The monitor's lateness is that wait, measured from inside the loop it
watches; with a 5 ms interval it sees any stall longer than a few milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field


@dataclass
class StallWindow:
    """The lateness samples of one measurement window (seconds)."""

    samples: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def summary(self) -> dict[str, float | int]:
        ordered = sorted(self.samples)
        n = len(ordered)

        def pct(p: float) -> float:
            return ordered[min(n - 1, int(p * n))] if n else 0.0

        return {
            "samples": n,
            "seconds": time.perf_counter() - self.started,
            "max_ms": 1000 * (ordered[-1] if n else 0.0),
            "p99_ms": 1000 * pct(0.99),
            "p50_ms": 1000 * pct(0.50),
            "over_10ms": sum(1 for s in ordered if s > 0.010),
            "over_50ms": sum(1 for s in ordered if s > 0.050),
        }


class LoopStallMonitor:
    """Start it inside the loop to watch; ``reset()`` opens a new window, ``summary()`` reads it."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.window = StallWindow()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-stall")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def reset(self) -> None:
        self.window = StallWindow()

    def summary(self) -> dict[str, float | int]:
        return self.window.summary()

    async def _run(self) -> None:
        interval = self.interval
        while True:
            before = time.perf_counter()
            await asyncio.sleep(interval)
            self.window.samples.append(max(0.0, time.perf_counter() - before - interval))
