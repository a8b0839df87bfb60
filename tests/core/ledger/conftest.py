from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from bot.core.ledger.sqlite import SqliteLedger
from bot.core.pricing import Cost

GUILD = 100
ALICE, BOB = 1, 2


def cost(credits: int, account: str = "0.004") -> Cost:
    return Cost(credits=credits, account=Decimal(account))


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    # A Friday, noon UTC.
    return FakeClock(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.sqlite3"


@pytest.fixture
async def ledger(db_path: Path, clock: FakeClock) -> AsyncIterator[SqliteLedger]:
    """A fresh ledger whose invariants are checked after the test."""
    store = await SqliteLedger.open(db_path, clock=clock, synchronous="NORMAL")
    try:
        yield store
        assert await store.check_invariants() == []
    finally:
        await store.close()
