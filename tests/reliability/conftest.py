"""``crash``: a world for SIGKILL tests (see harness.py): both stand-ins served by the test's
event loop, a server with two members holding credits, and no bot started yet."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.reliability.harness import CrashWorld
from tests.standins.fake_discord import FakeDiscord
from tests.standins.fake_segmind import FakeSegmind


@pytest.fixture
async def crash(tmp_path: Path, fake: FakeDiscord) -> AsyncIterator[CrashWorld]:
    async with FakeSegmind(balance=Decimal(1000)) as segmind:
        world = CrashWorld(tmp_path, fake, segmind)
        await world.grant_credits()
        try:
            yield world
        finally:
            await world.cleanup()
    assert fake.unknown_routes == []
