"""Fixtures for tests that drive discord.py through the loopback stand-ins.

``world`` is the real bot running against both stand-ins (see tests/harness.py).
``fake`` is a started ``FakeDiscord``. When it is torn down, every response it gave is checked
against Discord's OpenAPI description, so any test that uses it also keeps the stand-in
honest; the exchanges are collected for the session-wide check too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.core.ledger.sqlite import SqliteLedger
from tests.harness import START_CREDITS, World, running_bot, settings_for
from tests.standins.fake_discord import MANAGE_GUILD, FakeDiscord, RequestRecord
from tests.standins.fake_segmind import FakeSegmind
from tests.standins.openapi_check import assert_records_match_spec, load_spec


@pytest.fixture(scope="session")
def session_exchanges() -> list[RequestRecord]:
    """Every REST exchange recorded by a ``fake`` fixture during this test session."""
    return []


@pytest.fixture
async def fake(session_exchanges: list[RequestRecord]) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord() as stand_in:
        yield stand_in
    session_exchanges.extend(stand_in.requests)
    spec = load_spec()
    assert spec is not None, "Discord's OpenAPI spec is missing (../shared/discord-api-spec)"
    assert_records_match_spec(spec, stand_in.requests)


@pytest.fixture
async def segmind() -> AsyncIterator[FakeSegmind]:
    async with FakeSegmind(balance=Decimal(100)) as stand_in:
        yield stand_in


@pytest.fixture
def extra_settings() -> dict[str, str]:
    return {}


@pytest.fixture
async def world(
    tmp_path: Path, fake: FakeDiscord, segmind: FakeSegmind, extra_settings: dict[str, str]
) -> AsyncIterator[World]:
    guild = fake.add_guild("Test server")
    channel = guild.add_text_channel("images")
    log_channel = guild.add_text_channel("bot-log")
    alice = guild.add_member("alice")
    bob = guild.add_member("bob")
    admin = guild.add_member("admin", permissions=MANAGE_GUILD)
    settings = settings_for(
        tmp_path, fake, segmind, SDBOT_LOG_CHANNEL_ID=str(log_channel.id), **extra_settings
    )
    async with running_bot(settings, fake) as bot:
        for member in (alice, bob):
            await bot.ledger.grant(guild.id, member.user.id, START_CREDITS, actor="test")
        yield World(fake, segmind, settings, guild, channel, log_channel, alice, bob, admin, bot)
    # Whatever the test did (restarts included), the database on disk is consistent.
    ledger = await SqliteLedger.open(settings.sqlite_path)
    try:
        assert await ledger.check_invariants() == []
    finally:
        await ledger.close()
    assert fake.unknown_routes == []
