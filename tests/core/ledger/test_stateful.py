"""Hypothesis stateful test: random sequences of every ledger operation against a model.

The model re-implements the rules of docs/ledger.md in plain Python (two-part balances,
top-up refills once per UTC period, extras spent last, exactly-once finalization, recovery).
After every step the store must agree with the model, and the invariants must hold:
available ≥ 0, held ≥ 0, available + held + spent == everything granted (counted by the model),
the journal rebuilds the cached balances, one hold entry and ≤ 1 terminal entry per job.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, multiple, rule

from bot.core.errors import InsufficientCredits, LedgerError, UnknownJob, UserBlocked
from bot.core.ledger import Period
from bot.core.ledger.allowance import period_start
from bot.core.ledger.sqlite import SqliteLedger
from bot.core.pricing import Cost
from tests.core.ledger.conftest import FakeClock

T = TypeVar("T")
GUILD = 9
USERS = (1, 2, 3)
KEYS = tuple(f"k{n}" for n in range(12))
DEFAULT_ALLOWANCE = 5
START_GRANT = 30

users = st.sampled_from(USERS)
keys = st.sampled_from(KEYS)
held = Bundle("held")  # keys of jobs that exist, so the job rules mostly hit real jobs


@dataclass(frozen=True)
class Member:
    available: int = 0
    extra: int = 0
    held: int = 0
    spent: int = 0
    granted: int = 0  # counted independently of the store: the conservation target
    refilled_for: date | None = None  # first day of the period last refilled
    blocked: bool = False


@dataclass
class Job:
    user: int
    cost: int
    extra_used: int
    status: str = "queued"


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp(prefix="ledger-stateful-"))
        self.clock = FakeClock(datetime(2026, 11, 27, 12, 0, tzinfo=UTC))
        self.ledger = self.open()
        for user in USERS:  # a start-up grant, so that most holds succeed
            self.run(self.ledger.grant(GUILD, user, START_GRANT, actor="test"))
        self.members = {
            user: Member(available=START_GRANT, extra=START_GRANT, granted=START_GRANT)
            for user in USERS
        }
        self.jobs: dict[str, Job] = {}
        self.stored_results: set[str] = set()
        self.allowance, self.period = DEFAULT_ALLOWANCE, Period.DAY

    def open(self) -> SqliteLedger:
        return self.run(
            SqliteLedger.open(
                self.directory / "ledger.sqlite3",
                clock=self.clock,
                default_allowance=DEFAULT_ALLOWANCE,
                synchronous="NORMAL",
            )
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.ledger.close())
        self.loop.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- the model's refill ----------------------------------------------------------------

    def refilled(self, m: Member) -> Member:
        start = period_start(self.period, self.clock.now)
        if start is None or (m.refilled_for is not None and start <= m.refilled_for):
            return m
        added = max(0, self.allowance - (m.available - m.extra))  # top up the allowance part
        return replace(
            m, available=m.available + added, granted=m.granted + added, refilled_for=start
        )

    # --- rules -----------------------------------------------------------------------------

    @rule(user=users, amount=st.integers(-15, 30))
    def grant(self, user: int, amount: int) -> None:
        m = self.members[user]
        if amount == 0 or m.available < -amount:
            try:
                self.run(self.ledger.grant(GUILD, user, amount, actor="test"))
            except LedgerError:
                return
            raise AssertionError("an impossible grant was accepted")
        self.run(self.ledger.grant(GUILD, user, amount, actor="test"))
        extra = amount if amount > 0 else -min(m.extra, -amount)
        self.members[user] = replace(
            m, available=m.available + amount, extra=m.extra + extra, granted=m.granted + amount
        )

    @rule(user=users, amount=st.integers(0, 40))
    def set_balance(self, user: int, amount: int) -> None:
        self.run(self.ledger.set_balance(GUILD, user, amount, actor="test"))
        m = self.refilled(self.members[user])
        allowance_part = min(m.available - m.extra, amount)
        self.members[user] = replace(
            m,
            available=amount,
            extra=amount - allowance_part,
            granted=m.granted + amount - m.available,
        )

    @rule(amount=st.integers(0, 20), period=st.sampled_from(list(Period)))
    def set_allowance(self, amount: int, period: Period) -> None:
        self.run(self.ledger.set_allowance(GUILD, amount, period, actor="test"))
        self.allowance, self.period = amount, period

    @rule(hours=st.integers(1, 24 * 20))
    def advance_clock(self, hours: int) -> None:
        self.clock.advance(hours=hours)

    @rule(user=users)
    def refill(self, user: int) -> None:
        self.run(self.ledger.refill(GUILD, user, []))
        self.members[user] = self.refilled(self.members[user])

    @rule(user=users, blocked=st.booleans())
    def block(self, user: int, blocked: bool) -> None:
        if blocked:
            self.run(self.ledger.block(GUILD, user, actor="test", reason="test"))
        else:
            self.run(self.ledger.unblock(GUILD, user, actor="test"))
        self.members[user] = replace(self.members[user], blocked=blocked)

    @rule(target=held, user=users, key=keys, credits=st.integers(1, 12), start=st.booleans())
    def hold(self, user: int, key: str, credits: int, start: bool) -> Any:
        """A job is queued (and, if ``start``, sent upstream at once, as the worker does)."""
        call = self.ledger.hold(GUILD, user, key, Cost(credits, Decimal("0.001")), {"k": key})
        if key in self.jobs:  # a duplicate (maybe another member's key): the existing job
            result = self.run(call)
            assert not result.created
            assert (result.job.user_id, result.job.cost) == (
                self.jobs[key].user,
                self.jobs[key].cost,
            )
            return key
        m = self.members[user]
        if m.blocked:
            try:
                self.run(call)
            except UserBlocked:
                return multiple()
            raise AssertionError("a blocked member held credits")
        m = self.refilled(m)
        if m.available < credits:
            try:
                self.run(call)
            except InsufficientCredits:
                return multiple()  # the refill was rolled back with the hold
            raise AssertionError("a hold beyond the balance was accepted")
        assert self.run(call).created
        extra_used = max(0, credits - (m.available - m.extra))  # the allowance part goes first
        self.jobs[key] = Job(user, credits, extra_used)
        self.members[user] = replace(
            m, available=m.available - credits, extra=m.extra - extra_used, held=m.held + credits
        )
        if start:
            self.mark_running(key)
        return key

    @rule(key=keys)
    def an_unknown_job_is_an_error(self, key: str) -> None:
        if key not in self.jobs:
            self.expect_unknown(self.ledger.mark_running(key))
            self.expect_unknown(self.ledger.mark_delivered(key))
            self.expect_unknown(self.ledger.capture(key, "/r/x.png"))
            self.expect_unknown(self.ledger.release(key, "x"))

    @rule(key=held)
    def mark_running(self, key: str) -> None:
        job = self.jobs[key]
        assert self.run(self.ledger.mark_running(key)) == (job.status == "queued")
        if job.status == "queued":
            job.status = "running"

    @rule(key=held)
    def store_result(self, key: str) -> None:
        """The worker wrote the result to disk (before it captures, or before a crash)."""
        if self.jobs[key].status == "running":
            self.stored_results.add(key)

    @rule(key=held)
    def capture(self, key: str) -> None:
        self.finish(key, "succeeded")

    @rule(key=held, cancelled=st.booleans())
    def release(self, key: str, cancelled: bool) -> None:
        self.finish(key, "cancelled" if cancelled else "failed")

    @rule(key=held)
    def mark_delivered(self, key: str) -> None:
        job = self.jobs[key]
        assert self.run(self.ledger.mark_delivered(key)) == (job.status == "succeeded")
        if job.status == "succeeded":
            job.status = "delivered"

    @rule()
    def crash_and_recover(self) -> None:
        """The process dies between two steps; a new one recovers at start-up."""
        self.run(self.ledger.close())
        self.ledger = self.open()
        report = self.run(
            self.ledger.recover(
                lambda job: f"/r/{job.job_key}.png" if job.job_key in self.stored_results else None
            )
        )
        expected_captured = []
        for key, job in self.jobs.items():
            if job.status == "running" and key in self.stored_results:
                expected_captured.append(key)
                self.apply_finish(job, "succeeded")
            elif job.status in ("queued", "running"):
                self.apply_finish(job, "failed")
        assert sorted(report.captured) == sorted(expected_captured)
        assert self.run(self.ledger.open_jobs()) == []

    # --- helpers ---------------------------------------------------------------------------

    def expect_unknown(self, call: Coroutine[Any, Any, bool]) -> None:
        try:
            self.run(call)
        except UnknownJob:
            return
        raise AssertionError("an unknown job was accepted")

    def finish(self, key: str, status: str) -> None:
        job = self.jobs[key]
        if status == "succeeded":
            call = self.ledger.capture(key, f"/r/{key}.png")
        else:
            call = self.ledger.release(key, "test", cancelled=status == "cancelled")
        did_it = self.run(call)
        assert did_it == (job.status in ("queued", "running")), (key, job.status, status)
        if did_it:
            self.apply_finish(job, status)

    def apply_finish(self, job: Job, status: str) -> None:
        m = self.members[job.user]
        if status == "succeeded":
            m = replace(m, held=m.held - job.cost, spent=m.spent + job.cost)
        else:
            m = replace(
                m,
                held=m.held - job.cost,
                available=m.available + job.cost,
                extra=m.extra + job.extra_used,
            )
        self.members[job.user] = m
        job.status = status

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def balances_match_the_model_and_conserve_credits(self) -> None:
        for user in USERS:
            b = self.run(self.ledger.balance(GUILD, user))
            m = self.refilled(self.members[user])  # the view includes a due refill
            assert b.available >= 0 and b.held >= 0 and b.extra >= 0
            assert b.available + b.held + b.spent == m.granted
            assert (b.available, b.extra, b.held, b.spent) == (
                m.available,
                m.extra,
                m.held,
                m.spent,
            )
            assert b.blocked == m.blocked

    @invariant()
    def the_journal_rebuilds_the_balances_and_jobs_finish_once(self) -> None:
        assert self.run(self.ledger.check_invariants()) == []


LedgerMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerMachine = LedgerMachine.TestCase
