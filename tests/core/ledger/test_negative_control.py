"""Negative control: the concurrency check must catch a naive check-then-act debit.

``NaiveStore`` is what a ledger looks like without the safeguards: it reads the balance, checks
it, and writes the new value back in separate autocommitted statements (other tasks run in
between), looks a job key up before inserting it, and reads a job's state before finalizing it.
The very scenario and checker that pass for ``SqliteLedger`` must report the damage here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.core.errors import InsufficientCredits
from bot.core.pricing import Cost
from tests.core.ledger.race import run_race, violations


@dataclass
class _Created:
    created: bool


@dataclass
class _Amounts:
    available: int
    held: int
    spent: int


class NaiveStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db

    @classmethod
    async def open(cls, path: Path) -> NaiveStore:
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.executescript(
            "CREATE TABLE accounts (user_id INTEGER PRIMARY KEY, available INTEGER,"
            " held INTEGER, spent INTEGER);"
            "CREATE TABLE jobs (job_key TEXT, user_id INTEGER, cost INTEGER, status TEXT);"
        )
        return cls(db)

    async def _one(self, sql: str, *args: object) -> tuple[int, ...] | None:
        rows = list(await self.db.execute_fetchall(sql, args))
        return tuple(rows[0]) if rows else None

    async def grant(self, guild_id: int, user_id: int, amount: int, **_: object) -> None:
        await self.db.execute("INSERT INTO accounts VALUES (?, ?, 0, 0)", (user_id, amount))

    async def hold(
        self, guild_id: int, user_id: int, job_key: str, cost: Cost, params: object
    ) -> _Created:
        if await self._one("SELECT 1 FROM jobs WHERE job_key = ?", job_key):
            return _Created(False)
        row = await self._one("SELECT available, held FROM accounts WHERE user_id = ?", user_id)
        assert row is not None
        available, held = row
        if available < cost.credits:  # check …
            raise InsufficientCredits(cost.credits, available)
        await self.db.execute(  # … then act on what was read
            "UPDATE accounts SET available = ?, held = ? WHERE user_id = ?",
            (available - cost.credits, held + cost.credits, user_id),
        )
        await self.db.execute(
            "INSERT INTO jobs VALUES (?, ?, ?, 'queued')", (job_key, user_id, cost.credits)
        )
        return _Created(True)

    async def _finish(self, job_key: str, status: str) -> bool:
        row = await self._one(
            "SELECT user_id, cost FROM jobs WHERE job_key = ? AND status = 'queued'", job_key
        )
        if row is None:
            return False
        user_id, cost = row
        await self.db.execute("UPDATE jobs SET status = ? WHERE job_key = ?", (status, job_key))
        back = cost if status == "released" else 0
        await self.db.execute(
            "UPDATE accounts SET held = held - ?, available = available + ?,"
            " spent = spent + ? WHERE user_id = ?",
            (cost, back, cost - back, user_id),
        )
        return True

    async def capture(self, job_key: str, result_path: str) -> bool:
        return await self._finish(job_key, "captured")

    async def release(self, job_key: str, reason: str) -> bool:
        return await self._finish(job_key, "released")

    async def balance(self, guild_id: int, user_id: int) -> _Amounts:
        row = await self._one(
            "SELECT available, held, spent FROM accounts WHERE user_id = ?", user_id
        )
        assert row is not None
        return _Amounts(*row)


async def test_the_check_detects_a_naive_check_then_act_debit(tmp_path: Path) -> None:
    store = await NaiveStore.open(tmp_path / "naive.sqlite3")
    try:
        race = await run_race([store], seed=1, tasks_per_user=40)
    finally:
        await store.db.close()
    found = violations(race)
    assert any("overspent" in v for v in found), found
    assert any("held 2 times" in v for v in found), found  # a duplicated interaction, twice
    assert any("finalized" in v for v in found), found  # captured and released
