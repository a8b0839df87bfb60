"""SIGKILL a writer process mid-transaction, repeatedly; the database must stay intact.

After each kill: ``PRAGMA integrity_check`` is ``ok``; after all of them, start-up recovery
resolves every open job (captured only where the result file exists) and every invariant holds.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from bot.core.ledger.sqlite import SqliteLedger
from bot.core.ledger.store import FindResult, JobRecord, RecoveryReport
from tests.core.ledger.crash_writer import GUILD, MARKER, USERS

REPO = Path(__file__).resolve().parents[3]
KILLS = 6


def start_writer(db: Path, results: Path, seed: int, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.core.ledger.crash_writer", str(db), str(results),
         str(seed), *extra],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def kill_after(writer: subprocess.Popen[str], signal_line: str, delay: float) -> None:
    assert writer.stdout is not None
    line = writer.stdout.readline().strip()  # blocks until the writer is at work
    assert line == signal_line, f"writer said {line!r} (exit code {writer.poll()})"
    time.sleep(delay)
    assert writer.poll() is None, "the writer stopped by itself"
    os.kill(writer.pid, signal.SIGKILL)
    assert writer.wait(timeout=30) == -signal.SIGKILL
    writer.stdout.close()


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


def test_sigkill_mid_transaction_leaves_the_ledger_intact(tmp_path: Path) -> None:
    db, results = tmp_path / "ledger.sqlite3", tmp_path / "results"
    results.mkdir()
    rng = random.Random(20261127)
    for seed in range(KILLS):
        kill_after(start_writer(db, results, seed), "ready", rng.uniform(0.05, 0.5))
        assert integrity(db) == "ok"
    kill_after(start_writer(db, results, KILLS, "--stuck"), "in-transaction", 0.05)
    assert integrity(db) == "ok"

    def stored(job: JobRecord) -> str | None:
        path = results / f"{job.job_key}.png"
        return str(path) if path.exists() else None

    crashed, report, captured = asyncio.run(recover_and_check(db, stored))
    assert crashed, "the kills left no job open: the test did not exercise recovery"
    resolved = report.released + report.released_unknown + report.captured
    assert sorted(resolved) == sorted(job.job_key for job in crashed)
    # I7: every charged job has its result on disk (recovery captured only those it found).
    assert captured and all(job.result_path and Path(job.result_path).exists() for job in captured)
    assert integrity(db) == "ok"


async def recover_and_check(
    db: Path, stored: FindResult
) -> tuple[list[JobRecord], RecoveryReport, list[JobRecord]]:
    ledger = await SqliteLedger.open(db)
    try:
        crashed = await ledger.open_jobs()
        report = await ledger.recover(stored)
        assert await ledger.open_jobs() == []
        assert await ledger.check_invariants() == []
        for user in USERS:  # the stuck transaction's writes are gone
            assert all(MARKER not in (e.reason or "") for e in await ledger.journal(GUILD, user))
        return crashed, report, await ledger.undelivered(limit=10**6)
    finally:
        await ledger.close()
