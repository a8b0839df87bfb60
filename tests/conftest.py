"""Fixtures for tests that drive discord.py through the loopback Discord stand-in.

``fake`` is a started ``FakeDiscord``. When it is torn down, every response it gave is checked
against Discord's OpenAPI description, so any test that uses it also keeps the stand-in
honest; the exchanges are collected for the session-wide check too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.standins.fake_discord import FakeDiscord, RequestRecord
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
