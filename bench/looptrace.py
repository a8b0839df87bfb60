"""Diagnosis: which callbacks make up a long event-loop iteration.

asyncio's debug mode reports single callbacks slower than a threshold, but a stall is often
many callbacks of a few milliseconds each that became ready together (a burst of 50
interactions: 50 command tasks, each running until its first real wait). This wraps
``Handle._run`` and ``BaseEventLoop._run_once`` to time every callback and, for each iteration
longer than ``threshold`` seconds, log the count and the slowest callbacks, grouped by the
coroutine or function they run; garbage collections longer than a quarter of it are logged
too. Costs a few microseconds per callback; diagnosis only.
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.events
import gc
import logging
import time
from collections import defaultdict
from typing import Any

log = logging.getLogger("bench.looptrace")


def _describe(handle: asyncio.Handle) -> str:
    callback: Any = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        coro = owner.get_coro()
        frame = getattr(coro, "cr_frame", None)
        code = getattr(coro, "cr_code", None)
        where = f"{code.co_filename.rsplit('/', 2)[-1]}:{frame.f_lineno}" if frame and code else ""
        return f"task {getattr(coro, '__qualname__', coro)} @ {where}"
    name = getattr(callback, "__qualname__", None) or repr(callback)
    return f"callback {name}"


def install(threshold: float = 0.02) -> None:
    current: dict[str, Any] = {"handles": []}
    original_run = asyncio.events.Handle._run
    original_once = asyncio.base_events.BaseEventLoop._run_once

    def timed_run(self: asyncio.Handle) -> None:
        # Describe before running: a task's coroutine moves on while it runs.
        what = _describe(self)
        start = time.perf_counter()
        try:
            original_run(self)
        finally:
            current["handles"].append((what, time.perf_counter() - start))

    def timed_once(self: asyncio.base_events.BaseEventLoop) -> None:
        current["handles"] = []
        start = time.perf_counter()
        original_once(self)  # type: ignore[attr-defined]
        spent = time.perf_counter() - start
        handles = current["handles"]
        busy = sum(d for _, d in handles)
        if busy > threshold:
            groups: dict[str, list[float]] = defaultdict(list)
            for what, duration in handles:
                groups[what].append(duration)
            top = sorted(groups.items(), key=lambda kv: -sum(kv[1]))[:6]
            detail = "; ".join(
                f"{len(ds)}× {what} = {1000 * sum(ds):.1f} ms (max {1000 * max(ds):.1f})"
                for what, ds in top
            )
            log.warning(
                "loop iteration %.1f ms busy (%.1f ms with select), %d callbacks: %s",
                1000 * busy,
                1000 * spent,
                len(handles),
                detail,
            )

    gc_started: dict[str, float] = {}

    def gc_timer(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            gc_started["at"] = time.perf_counter()
        elif "at" in gc_started:
            spent = time.perf_counter() - gc_started.pop("at")
            if spent > threshold / 4:
                log.warning(
                    "gc generation %d took %.1f ms (%d collected)",
                    info.get("generation", -1),
                    1000 * spent,
                    info.get("collected", 0),
                )

    gc.callbacks.append(gc_timer)
    asyncio.events.Handle._run = timed_run  # type: ignore[method-assign]
    asyncio.base_events.BaseEventLoop._run_once = timed_once  # type: ignore[attr-defined]
