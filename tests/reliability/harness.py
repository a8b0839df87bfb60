"""Crash tests' harness: the real ``sdbot run`` as a subprocess, SIGKILLed and restarted on the
same database and data directory, against the loopback stand-ins that the test's own event loop
serves (as in tests/cli/test_service_cli.py).

Nothing in the bot is hooked: a job is held at a step by the stand-ins (a Segmind request that
hangs, a Discord post that is delayed or keeps failing), and progress is observed from the
outside only: the stand-ins' records, the database (read through its own connection, as
``sdbot quota`` does next to a running bot; WAL allows it) and the data directory.

After every restart :meth:`CrashWorld.verify` checks what a member and an operator rely on:
no job left open, every hold resolved, each member charged exactly for the results that exist
on disk, every result that exists delivered or retrievable, the journal and the balances
consistent, ``PRAGMA integrity_check`` ok, and what Segmind billed against what was captured
(a request cut off by the kill may have been billed while nobody was charged: the documented
"unknown outcome", counted and printed, never hidden).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

import bot as bot_package
from bot.core.ledger import JobStatus
from bot.core.ledger.sqlite import SqliteLedger
from tests.standins.fake_discord import FakeDiscord, Interaction, Member, Message
from tests.standins.fake_segmind import FakeSegmind

T = TypeVar("T")

START_CREDITS = 100
WEBHOOK = "/webhooks/{webhook_id}/{webhook_token}"  # follow-ups: where a result is posted
CHANNEL_MESSAGES = "/channels/{channel_id}/messages"  # the fallback, and start-up redelivery
COMMANDS = "/applications/{application_id}/commands"  # PUT once per start, after recovery
CAPTURED = (JobStatus.SUCCEEDED.value, JobStatus.DELIVERED.value)
OPEN = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
READY_WITHIN = 30.0
EXIT_WITHIN = 20.0


def png(size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, "PNG")
    return out.getvalue()


@dataclass(frozen=True)
class JobRow:
    job_key: str
    user_id: int
    status: str
    cost: int
    result_path: str | None
    error: str | None


@dataclass
class Snapshot:
    """The database and data directory as a SIGKILL left them (read from a copy)."""

    jobs: dict[str, JobRow]
    result_dirs: set[str]  # complete results/<job>/ directories
    partial_dirs: int  # results/.<job>.*.partial left by an interrupted save

    def phase(self, job_key: str) -> str:
        """Where the job's life was cut: a short name for reports."""
        job = self.jobs.get(job_key)
        if job is None:
            return "not held"
        on_disk = job_key in self.result_dirs
        if job.status == JobStatus.RUNNING.value:
            return "running, image written, not captured" if on_disk else "running, no image"
        return job.status


@dataclass
class BotProcess:
    number: int
    process: asyncio.subprocess.Process
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Verified:
    """What :meth:`CrashWorld.verify` found, for the test's own extra assertions."""

    jobs: dict[str, JobRow]
    billed: int
    captured: int
    unknown_billed: int  # billed upstream, nobody charged (cut off by a kill)
    cut_off: int  # requests that never got an answer (not billed by the stand-in)
    posts: dict[str, int]  # job → public result messages
    retrievable: list[str]  # succeeded, not delivered, files on disk


@dataclass
class CrashWorld:
    tmp_path: Path
    fake: FakeDiscord
    segmind: FakeSegmind
    bots: list[BotProcess] = field(default_factory=list)
    # Jobs delivered through /credits (its ephemeral reply carries the images), not posted.
    delivered_via_credits: set[str] = field(default_factory=set)
    step: str = "setup"

    def __post_init__(self) -> None:
        self.guild = self.fake.add_guild("Crash server")
        self.channel = self.guild.add_text_channel("images")
        self.alice = self.guild.add_member("alice")
        self.bob = self.guild.add_member("bob")
        self.members: list[Member] = [self.alice, self.bob]
        self.db = self.tmp_path / "sdbot.sqlite3"
        self.data = self.tmp_path / "data"
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(self.tmp_path),
            # The process runs the same code as this test, wherever it was imported from.
            "PYTHONPATH": str(Path(bot_package.__file__).resolve().parents[1]),
            **self.fake.env,
            "SEGMIND_API_KEY": self.segmind.api_key,
            "SEGMIND_BASE_URL": self.segmind.base_url,
            "SEGMIND_REQUESTS_PER_MINUTE": "1000",
            "SEGMIND_MAX_CONCURRENCY": "4",
            "SDBOT_MAX_QUEUED_PER_USER": "5",
            "DATABASE_URL": f"sqlite:///{self.db}",
            "SDBOT_DATA_DIR": str(self.data),
            "SDBOT_ATTACHMENT_HOSTS": "127.0.0.1",  # the Discord stand-in's CDN
            "SDBOT_UPSTREAM_TIMEOUT": "5",
            "SDBOT_SHUTDOWN_GRACE": "1",
            "SDBOT_LOG_LEVEL": "INFO",
        }

    # --- set-up -------------------------------------------------------------------------

    async def grant_credits(self) -> None:
        """Create the database (as ``sdbot run`` would) and give every member credits."""
        ledger = await SqliteLedger.open(self.db)
        try:
            for member in self.members:
                await ledger.grant(self.guild.id, member.user.id, START_CREDITS, actor="test")
        finally:
            await ledger.close()

    # --- the bot process ----------------------------------------------------------------

    @property
    def bot(self) -> BotProcess:
        assert self.bots, "no bot was started"
        return self.bots[-1]

    def _syncs(self) -> int:
        return sum(1 for r in self.fake.requests if r.method == "PUT" and r.route == COMMANDS)

    async def start(self) -> BotProcess:
        """Start ``sdbot run``; return once it has recovered, synced and connected.

        Start-up order (bot/bot.py): migrate → recovery → command sync → gateway. So a new
        command sync means recovery is done, and a new IDENTIFY means events reach it.
        """
        assert not self.bots or self.bot.process.returncode is not None, "a bot is running"
        syncs, identifies = self._syncs(), len(self.fake.identifies)
        number = len(self.bots) + 1
        log_path = self.tmp_path / f"bot-{number}.log"
        log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", "run",
                cwd=self.tmp_path, env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
            )  # fmt: skip
        finally:
            os.close(log)
        bot = BotProcess(number, process, log_path)
        self.bots.append(bot)
        await self.until(
            lambda: (
                self._syncs() > syncs
                and len(self.fake.identifies) > identifies
                and self.fake.connected
            ),
            f"bot #{number} recovered, synced and connected",
            within=READY_WITHIN,
        )
        return bot

    async def kill(self) -> Snapshot:
        """SIGKILL the bot; return the database and data directory exactly as it left them."""
        bot = self.bot
        bot.process.kill()
        code = await asyncio.wait_for(bot.process.wait(), EXIT_WITHIN)
        assert code == -signal.SIGKILL, f"bot #{bot.number} exited {code} before the kill"
        # The gateway stand-in must see the socket go, so the next start is a new session.
        await self.until(lambda: not self.fake.connected, "the killed bot's gateway closed")
        return self.snapshot()

    async def stop(self) -> None:
        """SIGTERM: the bot drains and exits 0."""
        bot = self.bot
        bot.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(bot.process.wait(), EXIT_WITHIN)
        except TimeoutError:
            bot.process.kill()
            raise AssertionError(f"bot #{bot.number} ignored SIGTERM\n{bot.log_tail()}") from None
        assert code == 0, f"bot #{bot.number} exited {code} on SIGTERM\n{bot.log_tail()}"

    async def cleanup(self) -> None:
        for bot in self.bots:
            if bot.process.returncode is None:
                bot.process.kill()
                await bot.process.wait()

    # --- acting as members --------------------------------------------------------------

    async def img2img(self, member: Member, prompt: str) -> Interaction:
        """``/img2img`` on a 640×480 PNG: 768×512 at 25 steps, 6 credits."""
        return await self.fake.slash(
            member, self.channel, "img2img", image=("in.png", png()), prompt=prompt
        )

    async def ephemeral_text(self, it: Interaction, needle: str, within: float = 10) -> str:
        def text() -> str | None:
            message = it.original
            if message is None:
                return None
            parts = [message.content or ""] + [
                f"{e.get('title', '')} {e.get('description', '')}" for e in message.embeds
            ]
            joined = " ".join(parts)
            return joined if needle.lower() in joined.lower() else None

        return await self.until(text, f"the ephemeral reply says {needle!r}", within=within)

    def result_posts(self, job_key: str) -> list[Message]:
        """Public messages carrying the job's result (its buttons name the job)."""
        return [
            m
            for m in self.channel.messages
            if not m.ephemeral
            and not m.deleted
            and m.attachments
            and any(cid.endswith(f":{job_key}") for cid in m.custom_ids)
        ]

    # --- observing ----------------------------------------------------------------------

    async def until(
        self,
        predicate: Callable[[], T | None],
        what: str,
        *,
        within: float = 10.0,
        poll: float = 0.01,
    ) -> T:
        """Wait for ``predicate()`` to be truthy; fail with the whole state if it never is,
        or at once if the bot process died."""
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if value:
                return value
            if self.bots and self.bot.process.returncode not in (None, -signal.SIGKILL):
                raise AssertionError(
                    f"[{self.step}] bot #{self.bot.number} exited "
                    f"{self.bot.process.returncode} while waiting for: {what}\n{self.describe()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"[{self.step}] not within {within}s: {what}\n{self.describe()}"
                )
            await asyncio.sleep(poll)

    def jobs(self, db: Path | None = None) -> dict[str, JobRow]:
        conn = sqlite3.connect(db or self.db, timeout=10)
        try:
            rows = conn.execute(
                "SELECT job_key, user_id, status, cost, result_path, error FROM jobs"
                " ORDER BY queued_at, rowid"
            ).fetchall()
        finally:
            conn.close()
        return {row[0]: JobRow(*row) for row in rows}

    def answered(self, index: int) -> Callable[[], bool]:
        """Whether Segmind's ``index``-th request has been answered (the image is on its way;
        the stand-in has billed it if it succeeded)."""
        requests = self.segmind.requests
        return lambda: len(requests) > index and requests[index].status is not None

    def status(self, it: Interaction) -> str | None:
        job = self.jobs().get(str(it.id))
        return job.status if job else None

    async def until_status(self, it: Interaction, *statuses: JobStatus, within: float = 10) -> str:
        wanted = {s.value for s in statuses}
        return await self.until(
            lambda: (s := self.status(it)) in wanted and s,
            f"job {it.id} in {sorted(wanted)}",
            within=within,
        )

    def result_dirs(self) -> set[str]:
        results = self.data / "results"
        if not results.is_dir():
            return set()
        return {p.name for p in results.iterdir() if p.is_dir() and not p.name.startswith(".")}

    def partial_dirs(self) -> int:
        results = self.data / "results"
        if not results.is_dir():
            return 0
        return sum(1 for p in results.iterdir() if p.name.endswith(".partial"))

    def snapshot(self) -> Snapshot:
        """Read a COPY of the killed bot's database, so the restart finds the files exactly
        as the kill left them (opening the original would run WAL recovery first)."""
        copy = self.tmp_path / "snapshot"
        shutil.rmtree(copy, ignore_errors=True)
        copy.mkdir()
        for suffix in ("", "-wal"):
            source = Path(f"{self.db}{suffix}")
            if source.exists():
                shutil.copy2(source, copy / f"{self.db.name}{suffix}")
        return Snapshot(self.jobs(copy / self.db.name), self.result_dirs(), self.partial_dirs())

    def describe(self) -> str:
        """Everything a failure report needs: jobs, balances, stand-ins, logs."""
        lines = [f"step: {self.step}"]
        try:
            for job in self.jobs().values():
                lines.append(f"  job {job}")
            conn = sqlite3.connect(self.db, timeout=10)
            try:
                for row in conn.execute(
                    "SELECT user_id, available, held, spent FROM accounts"
                ).fetchall():
                    lines.append(f"  account user={row[0]} available/held/spent={row[1:]}")
            finally:
                conn.close()
        except sqlite3.Error as error:
            lines.append(f"  (database unreadable: {error})")
        lines.append(f"  result dirs: {sorted(self.result_dirs())}, partial: {self.partial_dirs()}")
        lines.append(
            f"  segmind: {len(self.segmind.requests)} requests, statuses "
            f"{[r.status for r in self.segmind.requests]}, billed {self.segmind.billed}"
        )
        recent = [f"{r.method} {r.route} {r.status}" for r in self.fake.requests[-8:]]
        lines.append(f"  discord (last requests): {recent}")
        for bot in self.bots[-2:]:
            lines.append(f"--- bot #{bot.number} (exit {bot.process.returncode}) log tail ---")
            lines.append(bot.log_tail())
        return "\n".join(lines)

    # --- the invariants -----------------------------------------------------------------

    async def until_redelivered(self, within: float = 10) -> None:
        """Wait until the running bot has posted every result that was left undelivered."""

        def all_posted() -> bool:
            waiting = [k for k, j in self.jobs().items() if j.status == JobStatus.SUCCEEDED.value]
            lost = set(waiting) - self.result_dirs()
            assert not lost, f"[{self.step}] captured without a stored result: {lost}"
            return not waiting

        await self.until(
            all_posted, "every succeeded result re-posted (no job left 'succeeded')", within=within
        )

    async def verify(self, label: str) -> Verified:
        """Every crash invariant, from the database (bot running or not) and the stand-ins."""
        self.step = label
        state = self.describe()

        def check(ok: bool, what: str) -> None:
            assert ok, f"[{label}] {what}\n{state}"

        conn = sqlite3.connect(self.db, timeout=10)
        try:
            integrity = conn.execute("PRAGMA integrity_check").fetchall()
        finally:
            conn.close()
        check(integrity == [("ok",)], f"PRAGMA integrity_check = {integrity}")

        async with read_ledger(self.db) as ledger:
            problems = await ledger.check_invariants()
            open_jobs = await ledger.open_jobs()
            balances = {
                m.user.id: await ledger.balance(self.guild.id, m.user.id) for m in self.members
            }
        check(problems == [], f"check_invariants() = {problems}")
        check(open_jobs == [], f"jobs left open: {[(j.job_key, j.status) for j in open_jobs]}")

        jobs = self.jobs()
        captured = {k: j for k, j in jobs.items() if j.status in CAPTURED}
        on_disk = self.result_dirs()
        # Charged exactly for the results that exist: a captured job has its images on disk,
        # and every result on disk was charged for.
        check(
            set(captured) == on_disk,
            f"captured jobs {sorted(captured)} != results on disk {sorted(on_disk)}",
        )
        for key, job in captured.items():
            folder = self.data / "results" / key
            files = [p for p in folder.iterdir() if p.is_file()]
            check(bool(files) and all(p.stat().st_size > 0 for p in files), f"{key}: {files}")
            check(job.result_path == str(folder), f"{key}: result_path {job.result_path}")
        for member in self.members:
            uid = member.user.id
            b = balances[uid]
            charged = sum(j.cost for j in captured.values() if j.user_id == uid)
            check(b.held == 0, f"{member.name}: {b.held} credits still held")
            check(b.spent == charged, f"{member.name}: spent {b.spent} != results {charged}")
            check(
                b.available + b.spent == START_CREDITS,
                f"{member.name}: available {b.available} + spent {b.spent} != {START_CREDITS}",
            )

        # Every result that exists is delivered (really posted, or handed over by /credits)
        # or retrievable (kept on disk, offered by /credits and re-posted periodically).
        posts = {key: len(self.result_posts(key)) for key in captured}
        retrievable = []
        for key, job in captured.items():
            if job.status == JobStatus.DELIVERED.value:
                check(
                    posts[key] >= 1 or key in self.delivered_via_credits,
                    f"{key} is marked delivered but was never posted",
                )
            else:
                retrievable.append(key)

        billed = self.segmind.billed
        cut_off = sum(1 for r in self.segmind.requests if r.status is None)
        check(len(captured) <= billed, f"captured {len(captured)} > billed upstream {billed}")
        verified = Verified(
            jobs,
            billed,
            len(captured),
            billed - len(captured),
            cut_off,
            posts,
            retrievable,
        )
        duplicates = {k: n for k, n in posts.items() if n > 1}
        print(
            f"[{label}] ok: {len(jobs)} jobs, captured {len(captured)}, billed upstream "
            f"{billed}, unknown outcome billed-but-not-charged {verified.unknown_billed}, "
            f"requests cut off unanswered {cut_off}, retrievable {retrievable}, "
            f"duplicate posts {duplicates}, partial result dirs {self.partial_dirs()}"
        )
        return verified


@contextlib.asynccontextmanager
async def read_ledger(db: Path) -> AsyncIterator[SqliteLedger]:
    """The ledger on the bot's file, never migrating it (as ``sdbot quota`` opens it)."""
    ledger = await SqliteLedger.open(db, apply_migrations=False)
    try:
        yield ledger
    finally:
        await ledger.close()


def journal(db: Path) -> list[tuple[Any, ...]]:
    """Every journal entry, job and balance: to prove that a restart changed nothing."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        return [
            *conn.execute("SELECT id, user_id, kind, amount, job_key FROM entries ORDER BY id"),
            *conn.execute("SELECT job_key, status, cost, result_path FROM jobs ORDER BY job_key"),
            *conn.execute("SELECT user_id, available, held, spent FROM accounts ORDER BY user_id"),
        ]
    finally:
        conn.close()
