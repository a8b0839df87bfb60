"""``sdbot quota`` as a real subprocess, against a database another connection is writing to."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from bot.core.errors import InsufficientCredits
from bot.core.ledger.sqlite import SqliteLedger
from bot.core.pricing import Cost

GUILD, BUSY_USER, ADMINISTERED = 11, 1, 2


async def sdbot(db: Path, *args: str) -> tuple[int, str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "DATABASE_URL": f"sqlite:///{db}",  # an absolute path: sqlite:////…
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        cwd=db.parent, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def busy_bot(tmp_path: Path) -> AsyncIterator[tuple[SqliteLedger, list[int]]]:
    """The bot's ledger on the same file, holding and capturing without pause meanwhile."""
    ledger = await SqliteLedger.open(tmp_path / "sdbot.sqlite3")
    await ledger.grant(GUILD, BUSY_USER, 10**6, actor="test")
    done = [0]

    async def one_job() -> None:
        key = f"busy-{done[0]}"
        with contextlib.suppress(InsufficientCredits):
            await ledger.hold(GUILD, BUSY_USER, key, Cost(1, Decimal(0)), {})
            await ledger.mark_running(key)
            await ledger.capture(key, f"/r/{key}.png")
        done[0] += 1

    async def work() -> None:
        while True:
            await one_job()

    for _ in range(5):  # some finished jobs to report
        await one_job()
    task = asyncio.create_task(work())
    try:
        yield ledger, done
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await ledger.check_invariants() == []
        await ledger.close()


async def test_grant_set_show_while_the_bot_writes(
    busy_bot: tuple[SqliteLedger, list[int]], tmp_path: Path
) -> None:
    ledger, done = busy_bot
    db = tmp_path / "sdbot.sqlite3"
    member = ("--guild", str(GUILD), "--user", str(ADMINISTERED))
    before = done[0]

    code, out, err = await sdbot(db, "quota", "grant", *member, "50", "--reason", "prize", "--json")
    assert code == 0, err
    assert json.loads(out)["available"] == 50
    code, out, err = await sdbot(db, "quota", "set", *member, "20", "--json")
    assert code == 0, err
    code, out, err = await sdbot(db, "quota", "show", *member, "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert {"guild_id", "user_id", "available", "held", "spent"} <= shown.keys()
    assert all(type(shown[k]) is int for k in ("guild_id", "user_id", "available", "held", "spent"))
    assert (shown["guild_id"], shown["user_id"]) == (GUILD, ADMINISTERED)
    assert (shown["available"], shown["held"], shown["spent"]) == (20, 0, 0)

    assert done[0] > before, "the bot's writer made no progress while the CLI ran"
    entries = await ledger.journal(GUILD, ADMINISTERED)
    assert [(e.kind, e.amount) for e in entries] == [("set", -30), ("grant", 50)]
    assert all(e.actor.startswith("cli:") for e in entries)
    assert entries[1].reason == "prize"
    code, out, err = await sdbot(db, "quota", "show", "--guild", str(GUILD), "--user", "1")
    assert code == 0 and "available" in out and "held" in out, err


async def test_report_while_the_bot_writes(
    busy_bot: tuple[SqliteLedger, list[int]], tmp_path: Path
) -> None:
    code, out, err = await sdbot(
        tmp_path / "sdbot.sqlite3", "quota", "report", "--guild", str(GUILD), "--days", "3",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert report["top_users"][0]["user_id"] == BUSY_USER
    assert report["top_users"][0]["credits_spent"] >= 5
    assert [d["credits"] >= 0 for d in report["per_day"]] == [True] * 3
    code, out, err = await sdbot(tmp_path / "sdbot.sqlite3", "quota", "report", "--guild", "11")
    assert code == 0 and str(BUSY_USER) in out, err


async def test_refused_changes_exit_non_zero_with_the_reason(
    busy_bot: tuple[SqliteLedger, list[int]], tmp_path: Path
) -> None:
    code, _, err = await sdbot(
        tmp_path / "sdbot.sqlite3", "quota", "set", "--guild", "11", "--user", "2", "--", "-5"
    )
    assert code == 2 and "negative" in err


async def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nowhere.sqlite3"
    code, _, err = await sdbot(db, "quota", "show", "--guild", "1", "--user", "2", "--json")
    assert code == 2 and "sdbot migrate" in err
    assert not db.exists()
