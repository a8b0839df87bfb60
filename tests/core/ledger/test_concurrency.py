"""≥ 100 concurrent tasks racing on the same members (see race.py for the scenario)."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from pathlib import Path

import pytest

from bot.core.errors import InsufficientCredits
from bot.core.ledger import Period
from bot.core.ledger.sqlite import SqliteLedger
from bot.core.pricing import Cost
from tests.core.ledger.conftest import FakeClock
from tests.core.ledger.race import GUILD, run_race, violations


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_racing_holds_duplicates_and_finalizers_never_overspend(
    db_path: Path, seed: int
) -> None:
    ledger = await SqliteLedger.open(db_path)
    try:
        race = await run_race([ledger], seed=seed, tasks_per_user=40)  # 120 tasks
        assert violations(race) == []
        assert await ledger.check_invariants() == []
        # The race was real: more demand than credits, and both outcomes happened.
        assert race.refused > 0 and race.captured and race.released
    finally:
        await ledger.close()


async def test_two_stores_on_one_file_race_safely(db_path: Path) -> None:
    """Like two processes on one database: SQLite's write lock serialises the writers."""
    first = await SqliteLedger.open(db_path)
    second = await SqliteLedger.open(db_path)
    try:
        race = await run_race([first, second], seed=4, tasks_per_user=50)  # 150 tasks
        assert violations(race) == []
        assert await first.check_invariants() == []
    finally:
        await first.close()
        await second.close()


async def test_a_period_is_refilled_exactly_once_under_concurrency(
    db_path: Path, clock: FakeClock
) -> None:
    ledger = await SqliteLedger.open(db_path, clock=clock)
    try:
        await ledger.set_allowance(GUILD, 10, Period.DAY, actor="test")
        await ledger.refill(GUILD, 1, [])
        await ledger.hold(GUILD, 1, "yesterday", Cost(10, Decimal(0)), {})
        clock.advance(days=1)

        async def touch(n: int) -> None:
            if n % 2:
                await ledger.refill(GUILD, 1, [])
            else:
                with contextlib.suppress(InsufficientCredits):  # once the 10 are gone
                    await ledger.hold(GUILD, 1, f"k{n}", Cost(1, Decimal(0)), {})

        await asyncio.gather(*(touch(n) for n in range(120)))
        refills = [e for e in await ledger.journal(GUILD, 1, limit=500) if e.kind == "refill"]
        assert [e.period_key for e in refills] == ["day:2026-11-28", "day:2026-11-27"]
        balance = await ledger.balance(GUILD, 1)
        assert (balance.available, balance.held) == (0, 20)  # 10 yesterday + 10 one-credit holds
        assert await ledger.check_invariants() == []
    finally:
        await ledger.close()
