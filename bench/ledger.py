"""Benchmark: hold→capture pairs per second on the SQLite ledger with concurrent tasks.

Each task is one member placing jobs back to back: ``hold`` then ``capture`` (two write
transactions per pair). Every run uses a fresh database in a temporary directory (nothing is
written into the repository) and the invariants are checked after it.

    .venv/bin/python bench/ledger.py [--tasks 100] [--pairs 40] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from bot.core.ledger.sqlite import SqliteLedger, Synchronous
from bot.core.pricing import Cost

COST = Cost(credits=4, account=Decimal("0.004"))
GUILD = 1


async def one_run(synchronous: Synchronous, tasks: int, pairs: int, max_batch: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        ledger = await SqliteLedger.open(
            Path(directory) / "bench.sqlite3", synchronous=synchronous, max_batch=max_batch
        )
        try:
            await ledger.record_account_balance(Decimal(10**9))
            for user in range(tasks):
                await ledger.grant(GUILD, user, COST.credits * pairs, actor="bench")

            async def member(user: int) -> None:
                for n in range(pairs):
                    key = f"{user}-{n}"
                    await ledger.hold(GUILD, user, key, COST, {"seed": n}, role_ids=())
                    await ledger.capture(key, f"/results/{key}.png")

            start = time.perf_counter()
            await asyncio.gather(*(member(user) for user in range(tasks)))
            elapsed = time.perf_counter() - start
            problems = await ledger.check_invariants()
            if problems:
                raise SystemExit(f"invariants broken: {problems[:3]}")
        finally:
            await ledger.close()
    return tasks * pairs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=40, help="hold→capture pairs per task")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-batch", type=int, default=128, help="1 disables group commit")
    parser.add_argument("--sync", choices=["FULL", "NORMAL", "both"], default="both")
    args = parser.parse_args()
    settings: list[Synchronous] = ["FULL", "NORMAL"] if args.sync == "both" else [args.sync]
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{args.tasks} tasks × {args.pairs} pairs, max_batch={args.max_batch}"
    )
    for synchronous in settings:
        rates = [
            asyncio.run(one_run(synchronous, args.tasks, args.pairs, args.max_batch))
            for _ in range(args.runs)
        ]
        shown = ", ".join(f"{rate:,.0f}" for rate in rates)
        print(
            f"synchronous={synchronous}: median {statistics.median(rates):,.0f} "
            f"hold→capture pairs/s ({shown})"
        )


if __name__ == "__main__":
    main()
