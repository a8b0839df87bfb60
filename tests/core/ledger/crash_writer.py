"""A ledger writer for test_crash.py, meant to be SIGKILLed at a random moment.

    python -m tests.core.ledger.crash_writer DB RESULTS_DIR SEED            # a busy workload
    python -m tests.core.ledger.crash_writer DB RESULTS_DIR SEED --stuck    # dies mid-transaction

The workload follows the bot's order: hold → mark_running → write the result file → capture
(or release), with some jobs left open as a crash would leave them. ``--stuck`` opens a write
transaction, writes a lot into it (so SQLite spills uncommitted pages into the WAL), prints
``in-transaction`` and waits to be killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import sys
import time
from decimal import Decimal
from pathlib import Path

from bot.core.errors import InsufficientCredits
from bot.core.ledger.sqlite import SqliteLedger
from bot.core.pricing import Cost

GUILD = 5
USERS = (1, 2, 3, 4)
MARKER = "uncommitted"


async def member(ledger: SqliteLedger, results: Path, rng: random.Random, prefix: str) -> None:
    for n in range(10**9):
        user = rng.choice(USERS)
        if rng.random() < 0.1:
            await ledger.grant(GUILD, user, rng.randint(5, 40), actor="crash-test")
            continue
        key = f"{prefix}-{n}"
        with contextlib.suppress(InsufficientCredits):
            await ledger.hold(GUILD, user, key, Cost(rng.randint(1, 6), Decimal("0.001")), {})
            await ledger.mark_running(key)
            if rng.random() < 0.8:
                path = results / f"{key}.png"
                path.write_bytes(b"result")
                if rng.random() < 0.9:
                    await ledger.capture(key, str(path))
            elif rng.random() < 0.8:
                await ledger.release(key, "upstream failed")


async def busy(db: Path, results: Path, seed: int) -> None:
    ledger = await SqliteLedger.open(db)
    for user in USERS:
        await ledger.grant(GUILD, user, 100, actor="crash-test")
    print("ready", flush=True)
    rngs = [random.Random(seed * 100 + n) for n in range(8)]
    await asyncio.gather(
        *(member(ledger, results, rng, f"s{seed}t{n}") for n, rng in enumerate(rngs))
    )


def stuck(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA cache_size = 8")  # spill uncommitted pages into the WAL early
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "UPDATE accounts SET available = available + 777, granted = granted + 777"
        " WHERE guild_id = ?",
        (GUILD,),
    )
    for n in range(3000):
        conn.execute(
            "INSERT INTO entries (guild_id, user_id, kind, amount, actor, reason, created_at)"
            " VALUES (?, ?, 'grant', 777, 'crash-test', ?, '2026-01-01 00:00:00.000000')",
            (GUILD, USERS[n % len(USERS)], MARKER + "x" * 500),
        )
    print("in-transaction", flush=True)
    time.sleep(600)


if __name__ == "__main__":
    db_path, results_dir, seed_text = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    if "--stuck" in sys.argv:
        stuck(db_path)
    else:
        asyncio.run(busy(db_path, results_dir, int(seed_text)))
