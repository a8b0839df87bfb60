"""Fixtures for the core's tests: the Segmind stand-in and a client pointed at it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from bot.core.segmind import SegmindClient
from tests.standins.fake_segmind import FakeSegmind


@dataclass
class RecordedSleeps:
    """An injectable ``sleep`` that records each wait and returns at once."""

    waits: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
async def fake_segmind() -> AsyncIterator[FakeSegmind]:
    async with FakeSegmind() as fake:
        yield fake


@pytest.fixture
async def segmind(
    fake_segmind: FakeSegmind, sleeps: RecordedSleeps
) -> AsyncIterator[SegmindClient]:
    """A client of ``fake_segmind`` with instant retry waits and no practical rate limit."""
    async with SegmindClient(
        fake_segmind.base_url,
        fake_segmind.api_key,
        max_concurrency=4,
        requests_per_minute=1000,
        timeout_total=5.0,
        timeout_connect=1.0,
        sleep=sleeps,
    ) as client:
        yield client
