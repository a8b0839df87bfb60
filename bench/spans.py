"""Diagnosis: how long the bot spends in each step of a job, from inside its process.

Wraps a fixed list of the bot's (and discord.py's) functions, found by dotted name, with
timers; a name that no longer exists is skipped, so the list survives refactoring. With jobs
run one at a time (the "own time" phase) the median of each span is that step's share of the
bot's own time. Spans nest (``start_job`` contains ``prepare`` …): they are a breakdown to
read, not a sum.

Sync functions run in worker threads are timed inside the thread (their CPU and I/O); the
wait for a free thread is in the enclosing async span.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

# (module, attribute path) — async or sync, methods or module functions.
SPANS: tuple[tuple[str, str], ...] = (
    ("bot.cogs.generate", "Generation.start_job"),
    ("discord.interactions", "InteractionResponse.defer"),
    ("bot.cogs.generate", "Generation._precheck"),
    ("bot.cogs.generate", "download_capped"),
    ("bot.cogs.generate", "prepare"),
    ("bot.core.images", "prepare_input"),
    ("bot.core.jobs", "prepare_input"),
    ("bot.core.images", "encode_request_image"),
    ("bot.core.jobs", "encode_request_image"),
    ("bot.core.jobs", "JobService.submit"),
    ("bot.core.results", "ResultStore.save_input"),
    ("bot.core.results", "ResultStore.save_result"),
    ("bot.core.ledger.sqlite", "SqliteLedger.balance"),
    ("bot.core.ledger.sqlite", "SqliteLedger.account_state"),
    ("bot.core.ledger.sqlite", "SqliteLedger.hold"),
    ("bot.core.ledger.sqlite", "SqliteLedger.mark_running"),
    ("bot.core.ledger.sqlite", "SqliteLedger.record_account_balance"),
    ("bot.core.ledger.sqlite", "SqliteLedger.capture"),
    ("bot.core.ledger.sqlite", "SqliteLedger.job"),
    ("bot.core.ledger.sqlite", "SqliteLedger.mark_delivered"),
    ("bot.core.jobs", "JobService._run"),
    ("bot.core.segmind", "SegmindClient.generate"),
    ("bot.core.segmind", "_request_body"),
    ("bot.core.segmind", "SegmindClient._exchange"),
    ("bot.core.segmind", "_extract_images"),
    ("bot.core.jobs", "JobService._succeeded"),
    ("bot.delivery", "Delivery.on_result"),
    ("bot.delivery", "Delivery.post_result"),
    ("discord.webhook.async_", "Webhook.send"),
    ("discord.interactions", "Interaction.edit_original_response"),
)


class Spans:
    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = defaultdict(list)

    def reset(self) -> None:
        self.samples = defaultdict(list)

    def summary(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "n": len(values),
                "median_ms": 1000 * statistics.median(values),
                "total_ms": 1000 * sum(values),
            }
            for name, values in sorted(self.samples.items())
            if values
        }

    def install(self) -> list[str]:
        """Wrap every span that exists; return the names found."""
        found = []
        for module_name, path in SPANS:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            owner: Any = module
            *parents, attr = path.split(".")
            try:
                for parent in parents:
                    owner = getattr(owner, parent)
                target = inspect.getattr_static(owner, attr)
            except AttributeError:
                continue
            if getattr(target, "__bench_span__", False):
                continue
            label = f"{module_name.rsplit('.', 1)[-1]}.{path}"
            setattr(owner, attr, self._wrap(target, label))
            found.append(label)
        return found

    def _wrap(self, func: Any, label: str) -> Any:
        static = isinstance(func, staticmethod)
        inner: Callable[..., Any] = func.__func__ if static else func

        if inspect.iscoroutinefunction(inner):

            @functools.wraps(inner)
            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return await inner(*args, **kwargs)
                finally:
                    self.samples[label].append(time.perf_counter() - start)

            wrapper: Any = timed_async
        else:

            @functools.wraps(inner)
            def timed(*args: Any, **kwargs: Any) -> Any:
                start = time.perf_counter()
                try:
                    return inner(*args, **kwargs)
                finally:
                    self.samples[label].append(time.perf_counter() - start)

            wrapper = timed
        wrapper.__bench_span__ = True
        return staticmethod(wrapper) if static else wrapper
