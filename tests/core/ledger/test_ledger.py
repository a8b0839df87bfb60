"""Unit tests of every ledger rule (docs/ledger.md). Invariants are checked after each test."""

from __future__ import annotations

import asyncio
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest

from bot.core.errors import (
    AccountLow,
    GenerationPaused,
    InsufficientCredits,
    LedgerError,
    UnknownJob,
    UserBlocked,
)
from bot.core.ledger import JobStatus, LedgerBusy, PauseKind, Period
from bot.core.ledger.sqlite import SqliteLedger
from tests.core.ledger.conftest import ALICE, BOB, GUILD, FakeClock, cost

ADMIN = "discord:42"


async def funded(ledger: SqliteLedger, amount: int, user: int = ALICE) -> None:
    await ledger.grant(GUILD, user, amount, actor=ADMIN, reason="test")


# --- holds ---------------------------------------------------------------------------------


async def test_hold_moves_credits_from_available_to_held(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    result = await ledger.hold(GUILD, ALICE, "i-1", cost(4), {"seed": 7, "prompt": "a cat"})
    assert result.created
    job = result.job
    assert (job.status, job.cost, job.seed, job.params["prompt"]) == ("queued", 4, 7, "a cat")
    assert job.account_cost == Decimal("0.004")
    balance = await ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held, balance.spent) == (6, 4, 0)


async def test_the_same_key_never_holds_twice(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    first = await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    again = await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    assert first.created and not again.created
    assert again.job == first.job
    assert (await ledger.balance(GUILD, ALICE)).held == 4
    holds = [e for e in await ledger.journal(GUILD, ALICE) if e.kind == "hold"]
    assert len(holds) == 1


async def test_a_duplicate_returns_the_job_even_when_a_new_hold_would_be_refused(
    ledger: SqliteLedger,
) -> None:
    await funded(ledger, 4)
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    await ledger.pause("406", kind=PauseKind.OUT_OF_CREDITS, actor="system")
    again = await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})  # paused and no credits left
    assert not again.created


async def test_insufficient_credits_changes_nothing(ledger: SqliteLedger) -> None:
    await funded(ledger, 3)
    with pytest.raises(InsufficientCredits) as raised:
        await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    assert (raised.value.needed, raised.value.available) == (4, 3)
    assert await ledger.job("i-1") is None
    assert (await ledger.balance(GUILD, ALICE)).available == 3


async def test_a_job_costs_at_least_one_credit(ledger: SqliteLedger) -> None:
    with pytest.raises(ValueError):
        await ledger.hold(GUILD, ALICE, "i-1", cost(0), {})


async def test_blocked_members_cannot_hold_until_unblocked(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    blocked = await ledger.block(GUILD, ALICE, actor=ADMIN, reason="spam")
    assert blocked.blocked and blocked.blocked_reason == "spam"
    with pytest.raises(UserBlocked) as raised:
        await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    assert raised.value.reason == "spam"
    assert not (await ledger.unblock(GUILD, ALICE, actor=ADMIN)).blocked
    assert (await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})).created
    kinds = [(e.kind, e.actor, e.reason) for e in await ledger.journal(GUILD, ALICE)]
    assert ("block", ADMIN, "spam") in kinds and ("unblock", ADMIN, None) in kinds


# --- capture, release and the job's states -------------------------------------------------


async def test_capture_happens_exactly_once(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {"seed": 1})
    assert await ledger.mark_running("i-1", balance_before=Decimal("12.5"))
    assert await ledger.capture("i-1", "/data/i-1.png", seed=99, balance_after=Decimal("12.496"))
    assert not await ledger.capture("i-1", "/data/other.png")
    assert not await ledger.release("i-1", "late failure")
    job = await ledger.job("i-1")
    assert job is not None
    assert (job.status, job.result_path, job.seed) == ("succeeded", "/data/i-1.png", 99)
    assert (job.balance_before, job.balance_after) == (Decimal("12.5"), Decimal("12.496"))
    assert job.started_at is not None and job.finished_at is not None
    balance = await ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held, balance.spent) == (6, 0, 4)


async def test_release_happens_exactly_once_and_gives_the_credits_back(
    ledger: SqliteLedger,
) -> None:
    await funded(ledger, 10)
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    assert await ledger.release("i-1", "upstream 500")
    assert not await ledger.release("i-1", "again")
    assert not await ledger.capture("i-1", "/data/i-1.png")
    job = await ledger.job("i-1")
    assert job is not None and (job.status, job.error) == ("failed", "upstream 500")
    balance = await ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held, balance.spent) == (10, 0, 0)


async def test_cancel_is_a_release_with_its_own_status(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    assert await ledger.release("i-1", "cancelled by the member", cancelled=True)
    job = await ledger.job("i-1")
    assert job is not None and job.status is JobStatus.CANCELLED


async def test_job_state_transitions_are_guarded(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    assert not await ledger.mark_delivered("i-1")  # not succeeded yet
    assert await ledger.mark_running("i-1")
    assert not await ledger.mark_running("i-1")
    assert await ledger.capture("i-1", "/data/i-1.png")
    assert await ledger.mark_delivered("i-1")
    assert not await ledger.mark_delivered("i-1")
    job = await ledger.job("i-1")
    assert job is not None and job.status is JobStatus.DELIVERED and job.delivered_at


async def test_a_capture_needs_the_stored_result(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    with pytest.raises(ValueError):
        await ledger.capture("i-1", "")


async def test_unknown_jobs_are_an_error_not_a_silent_false(ledger: SqliteLedger) -> None:
    for call in (
        ledger.capture("nope", "/x.png"),
        ledger.release("nope", "x"),
        ledger.mark_running("nope"),
        ledger.mark_delivered("nope"),
    ):
        with pytest.raises(UnknownJob):
            await call


async def test_a_cancelled_caller_does_not_stop_its_capture(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    task = asyncio.create_task(ledger.capture("i-1", "/data/i-1.png"))
    await asyncio.sleep(0)  # queued with the writer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await ledger.capture("i-1", "/data/i-1.png")  # the first one went through
    assert (await ledger.balance(GUILD, ALICE)).spent == 4


# --- admin changes -------------------------------------------------------------------------


async def test_grant_adds_extra_credits_and_is_journalled(ledger: SqliteLedger) -> None:
    balance = await ledger.grant(GUILD, ALICE, 25, actor=ADMIN, reason="event prize")
    assert (balance.available, balance.extra, balance.granted) == (25, 25, 25)
    (entry,) = await ledger.journal(GUILD, ALICE)
    assert (entry.kind, entry.amount, entry.actor, entry.reason) == (
        "grant",
        25,
        ADMIN,
        "event prize",
    )


async def test_a_negative_grant_takes_extras_first_and_never_below_zero(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.set_allowance(GUILD, 10, Period.DAY, actor=ADMIN)
    await ledger.refill(GUILD, ALICE, [])
    await funded(ledger, 5)
    balance = await ledger.grant(GUILD, ALICE, -7, actor=ADMIN, reason="refund abuse")
    assert (balance.available, balance.extra) == (8, 0)
    with pytest.raises(LedgerError):
        await ledger.grant(GUILD, ALICE, -9, actor=ADMIN)
    with pytest.raises(LedgerError):
        await ledger.grant(GUILD, ALICE, 0, actor=ADMIN)
    assert (await ledger.journal(GUILD, ALICE))[0].kind == "adjust"


async def test_set_is_journalled_as_the_difference(ledger: SqliteLedger) -> None:
    await funded(ledger, 30)
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    balance = await ledger.set_balance(GUILD, ALICE, 10, actor=ADMIN, reason="reset")
    assert (balance.available, balance.held, balance.granted) == (10, 4, 14)
    entry = (await ledger.journal(GUILD, ALICE))[0]
    assert (entry.kind, entry.amount, entry.reason) == ("set", -16, "reset")
    raised = await ledger.set_balance(GUILD, ALICE, 50, actor=ADMIN)
    assert raised.available == 50
    with pytest.raises(LedgerError):
        await ledger.set_balance(GUILD, ALICE, -1, actor=ADMIN)


async def test_set_keeps_the_remaining_allowance_and_makes_the_rest_extra(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.set_allowance(GUILD, 100, Period.DAY, actor=ADMIN)
    await ledger.hold(GUILD, ALICE, "i-1", cost(70), {}, role_ids=[])  # 30 allowance left
    balance = await ledger.set_balance(GUILD, ALICE, 500, actor=ADMIN)
    assert (balance.available, balance.extra) == (500, 470)
    clock.advance(days=1)
    assert (await ledger.balance(GUILD, ALICE)).available == 570  # allowance topped up to 100
    lowered = await ledger.set_balance(GUILD, ALICE, 20, actor=ADMIN)
    assert (lowered.available, lowered.extra) == (20, 0)


async def test_set_applies_a_due_refill_first(ledger: SqliteLedger, clock: FakeClock) -> None:
    await ledger.set_allowance(GUILD, 100, Period.DAY, actor=ADMIN)
    await ledger.hold(GUILD, ALICE, "i-1", cost(70), {})
    clock.advance(days=1)
    balance = await ledger.set_balance(GUILD, ALICE, 40, actor=ADMIN)
    assert (balance.available, balance.extra) == (40, 0)
    # No refill is left waiting to land on top of the admin's number later today.
    assert (await ledger.refill(GUILD, ALICE, [])).available == 40
    kinds = [(e.kind, e.amount) for e in await ledger.journal(GUILD, ALICE)]
    assert kinds[:2] == [("set", -60), ("refill", 70)]


# --- allowances ----------------------------------------------------------------------------


async def test_a_new_server_uses_the_operator_default_per_day(
    db_path: Path, clock: FakeClock
) -> None:
    store = await SqliteLedger.open(db_path, clock=clock, default_allowance=12)
    try:
        allowance = await store.guild_allowance(GUILD)
        assert (allowance.amount, allowance.period, allowance.is_default) == (12, Period.DAY, True)
        assert (await store.hold(GUILD, ALICE, "i-1", cost(12), {})).created
        with pytest.raises(InsufficientCredits):
            await store.hold(GUILD, ALICE, "i-2", cost(1), {})
        clock.advance(days=1)
        assert (await store.hold(GUILD, ALICE, "i-2", cost(12), {})).created
        assert await store.check_invariants() == []
    finally:
        await store.close()


async def test_refill_happens_once_per_period_and_never_stacks(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.set_allowance(GUILD, 10, Period.DAY, actor=ADMIN)
    assert (await ledger.refill(GUILD, ALICE, [])).available == 10
    assert (await ledger.refill(GUILD, ALICE, [])).available == 10  # same day: nothing more
    await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    assert (await ledger.refill(GUILD, ALICE, [])).available == 6  # spent today, no new refill
    clock.advance(days=1)
    assert (await ledger.refill(GUILD, ALICE, [])).available == 10  # topped up, not 16
    clock.advance(days=3)  # idle days do not accumulate
    assert (await ledger.refill(GUILD, ALICE, [])).available == 10
    refills = [e for e in await ledger.journal(GUILD, ALICE) if e.kind == "refill"]
    assert [e.amount for e in refills] == [4, 10]  # newest first; a zero refill is not written


async def test_balance_shows_a_due_refill_without_writing(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.set_allowance(GUILD, 10, Period.WEEK, actor=ADMIN)
    balance = await ledger.balance(GUILD, BOB)
    assert (balance.available, balance.granted, balance.period) == (10, 10, Period.WEEK)
    assert balance.next_refill is not None and balance.next_refill.weekday() == 0
    assert await ledger.journal(GUILD, BOB) == []  # a read creates nothing


async def test_grants_are_kept_on_top_of_the_allowance(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.set_allowance(GUILD, 10, Period.DAY, actor=ADMIN)
    await ledger.refill(GUILD, ALICE, [])
    await funded(ledger, 50)
    await ledger.hold(GUILD, ALICE, "i-1", cost(15), {})  # 10 allowance + 5 extra
    job = await ledger.job("i-1")
    assert job is not None and job.extra_used == 5
    assert (await ledger.balance(GUILD, ALICE)).extra == 45
    clock.advance(days=1)
    balance = await ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.extra) == (55, 45)


async def test_a_release_returns_extras_to_the_extras(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.set_allowance(GUILD, 10, Period.DAY, actor=ADMIN)
    await ledger.refill(GUILD, ALICE, [])
    await funded(ledger, 20)
    await ledger.hold(GUILD, ALICE, "i-1", cost(25), {})
    await ledger.release("i-1", "failed")
    balance = await ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.extra) == (30, 20)


async def test_members_get_the_highest_of_the_guild_and_their_roles(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.set_allowance(GUILD, 10, Period.DAY, actor=ADMIN)
    await ledger.set_role_allowance(GUILD, 501, 30, actor=ADMIN)
    allowance = await ledger.set_role_allowance(GUILD, 502, 20, actor=ADMIN)
    assert allowance.roles == {501: 30, 502: 20}
    assert (await ledger.refill(GUILD, ALICE, [502, 501, 999])).available == 30
    assert (await ledger.refill(GUILD, BOB, [999])).available == 10
    clock.advance(days=1)
    # No roles given: the ones last seen count (the CLI and the read-only balance).
    assert (await ledger.balance(GUILD, ALICE)).allowance == 30
    await ledger.hold(GUILD, ALICE, "i-1", cost(30), {})
    removed = await ledger.set_role_allowance(GUILD, 501, 0, actor=ADMIN)
    assert removed.roles == {502: 20}
    clock.advance(days=1)
    assert (await ledger.refill(GUILD, ALICE, [501, 502])).available == 20


async def test_period_none_never_refills(ledger: SqliteLedger, clock: FakeClock) -> None:
    await ledger.set_allowance(GUILD, 10, Period.NONE, actor=ADMIN)
    await funded(ledger, 5)
    clock.advance(days=40)
    balance = await ledger.refill(GUILD, ALICE, [])
    assert (balance.available, balance.next_refill) == (5, None)


async def test_monthly_and_weekly_refills_follow_utc_boundaries(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.set_allowance(GUILD, 10, Period.WEEK, actor=ADMIN)
    await ledger.hold(GUILD, ALICE, "i-1", cost(10), {})  # Friday
    clock.advance(days=2, hours=11, minutes=59)  # Sunday 23:59
    assert (await ledger.refill(GUILD, ALICE, [])).available == 0
    clock.advance(minutes=1)  # Monday 00:00 UTC
    assert (await ledger.refill(GUILD, ALICE, [])).available == 10
    await ledger.set_allowance(GUILD, 10, Period.MONTH, actor=ADMIN)
    await ledger.hold(GUILD, ALICE, "i-2", cost(10), {})  # the switch's refill: +0 (was full)
    assert (await ledger.refill(GUILD, ALICE, [])).available == 0
    clock.advance(days=1)  # 2026-12-01
    assert (await ledger.refill(GUILD, ALICE, [])).available == 10


async def test_allowances_cannot_be_negative(ledger: SqliteLedger) -> None:
    with pytest.raises(LedgerError):
        await ledger.set_allowance(GUILD, -1, Period.DAY, actor=ADMIN)
    with pytest.raises(LedgerError):
        await ledger.set_role_allowance(GUILD, 5, -1, actor=ADMIN)


# --- the account guard ---------------------------------------------------------------------


async def test_an_unknown_account_balance_allows_jobs(ledger: SqliteLedger) -> None:
    await funded(ledger, 10)
    state = await ledger.account_state()
    assert state.remaining is None and not state.paused
    assert (await ledger.hold(GUILD, ALICE, "i-1", cost(4, "100"), {})).created


async def test_the_guard_refuses_what_the_account_cannot_cover(
    db_path: Path, clock: FakeClock
) -> None:
    store = await SqliteLedger.open(db_path, clock=clock, account_floor=Decimal("1.00"))
    try:
        await store.grant(GUILD, ALICE, 100, actor=ADMIN)
        await store.record_account_balance(Decimal("1.010"))
        # 1.010 − 1.00 floor covers 0.010 …
        assert (await store.hold(GUILD, ALICE, "i-1", cost(4, "0.006"), {})).created
        # … but not 0.006 more while i-1 is still open (its cost is not in the reading yet).
        with pytest.raises(AccountLow):
            await store.hold(GUILD, ALICE, "i-2", cost(4, "0.006"), {})
        assert (await store.hold(GUILD, ALICE, "i-3", cost(4, "0.004"), {})).created
        await store.release("i-1", "failed")
        assert (await store.hold(GUILD, ALICE, "i-2", cost(4, "0.006"), {})).created
        state = await store.account_state()
        assert (state.floor, state.open_cost) == (Decimal("1.00"), Decimal("0.010"))
        assert (await store.balance(GUILD, ALICE)).held == 8
        assert await store.check_invariants() == []
    finally:
        await store.close()


async def test_an_older_reading_never_replaces_a_newer_one(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.record_account_balance(Decimal("5"), seen_at=clock.now)
    state = await ledger.record_account_balance(Decimal("9"), seen_at=clock.now.replace(hour=11))
    assert (state.remaining, state.seen_at) == (Decimal("5"), clock.now)


async def test_a_406_pause_lifts_on_a_later_reading_above_the_floor(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await funded(ledger, 10)
    state = await ledger.pause("out of credits (406)", kind=PauseKind.OUT_OF_CREDITS, actor="api")
    assert state.paused and state.pause_kind is PauseKind.OUT_OF_CREDITS
    with pytest.raises(GenerationPaused) as raised:
        await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})
    assert raised.value.reason == "out of credits (406)"
    # A reading taken before the pause (a late response) does not lift it; nor does zero.
    await ledger.record_account_balance(Decimal("3"), seen_at=clock.now.replace(hour=11))
    clock.advance(minutes=1)
    assert (await ledger.record_account_balance(Decimal("0"))).paused
    clock.advance(minutes=1)
    # An error response's reading (a 406 for a spend cap carries a high balance) does not.
    assert (await ledger.record_account_balance(Decimal("3"), successful=False)).paused
    clock.advance(minutes=1)
    assert not (await ledger.record_account_balance(Decimal("3"))).paused
    assert (await ledger.hold(GUILD, ALICE, "i-1", cost(4), {})).created


async def test_a_misconfiguration_pause_lifts_only_by_an_admin(
    ledger: SqliteLedger, clock: FakeClock
) -> None:
    await ledger.pause("401: bad API key", kind=PauseKind.MISCONFIGURED, actor="api")
    clock.advance(minutes=1)
    assert (await ledger.record_account_balance(Decimal("50"))).paused
    # A 406 does not downgrade it to a pause that lifts by itself.
    state = await ledger.pause("406", kind=PauseKind.OUT_OF_CREDITS, actor="api")
    assert state.pause_kind is PauseKind.MISCONFIGURED
    state = await ledger.resume(actor=ADMIN)
    assert not state.paused and state.resumed_by == ADMIN


async def test_account_state_reports_spend_today(ledger: SqliteLedger, clock: FakeClock) -> None:
    await funded(ledger, 100)
    await ledger.hold(GUILD, ALICE, "old", cost(4, "0.004"), {})
    await ledger.capture("old", "/r/old.png")
    clock.advance(days=1)
    for key in ("a", "b"):
        await ledger.hold(GUILD, ALICE, key, cost(4, "0.004"), {})
        await ledger.capture(key, f"/r/{key}.png")
    await ledger.hold(GUILD, ALICE, "c", cost(8, "0.011"), {})
    state = await ledger.account_state()
    assert (state.jobs_today, state.spent_today_credits) == (2, 8)
    assert (state.spent_today_account, state.open_cost) == (Decimal("0.008"), Decimal("0.011"))


# --- recovery ------------------------------------------------------------------------------


async def test_recovery_resolves_every_open_job(ledger: SqliteLedger, clock: FakeClock) -> None:
    await funded(ledger, 100)
    for key in ("queued", "running-done", "running-lost", "succeeded"):
        await ledger.hold(GUILD, ALICE, key, cost(5), {})
    for key in ("running-done", "running-lost", "succeeded"):
        await ledger.mark_running(key)
    await ledger.capture("succeeded", "/r/succeeded.png")
    stored = {"running-done": "/r/running-done.png"}
    clock.advance(minutes=1)  # the restart

    report = await ledger.recover(lambda job: stored.get(job.job_key))
    assert report.released == ["queued"]
    assert report.captured == ["running-done"]
    assert report.released_unknown == ["running-lost"]
    assert [job.job_key for job in report.undelivered] == ["succeeded", "running-done"]
    assert await ledger.open_jobs() == []
    balance = await ledger.balance(GUILD, ALICE)
    assert (balance.available, balance.held, balance.spent) == (90, 0, 10)
    again = await ledger.recover(lambda job: None)
    assert again.released == again.captured == again.released_unknown == []


async def test_undelivered_results_are_listed_until_delivered(ledger: SqliteLedger) -> None:
    await funded(ledger, 100)
    await ledger.hold(GUILD, ALICE, "i-1", cost(5), {})
    await ledger.capture("i-1", "/r/i-1.png")
    (job,) = await ledger.undelivered()
    assert job.result_path == "/r/i-1.png"
    await ledger.mark_delivered("i-1")
    assert await ledger.undelivered() == []


# --- reports -------------------------------------------------------------------------------


async def test_usage_reports_and_recent_jobs(ledger: SqliteLedger, clock: FakeClock) -> None:
    await funded(ledger, 100, ALICE)
    await funded(ledger, 100, BOB)
    await ledger.hold(GUILD, ALICE, "a-old", cost(9), {})
    await ledger.capture("a-old", "/r/a-old.png")
    clock.advance(days=10)
    for user, key, credits, ok in [
        (ALICE, "a1", 4, True),
        (ALICE, "a2", 4, False),
        (BOB, "b1", 8, True),
        (BOB, "b2", 8, True),
    ]:
        await ledger.hold(GUILD, user, key, cost(credits), {})
        if ok:
            await ledger.capture(key, f"/r/{key}.png")
        else:
            await ledger.release(key, "failed")
    clock.advance(days=1)
    await ledger.hold(GUILD, ALICE, "a3", cost(4), {})  # still open: not in the usage

    usage = await ledger.usage(GUILD, days=7)
    assert [(u.user_id, u.jobs, u.succeeded, u.failed, u.credits_spent) for u in usage] == [
        (BOB, 2, 2, 0, 16),
        (ALICE, 2, 1, 1, 4),
    ]
    per_day = await ledger.spend_per_day(GUILD, days=3)
    assert [(d.day.isoformat(), d.jobs, d.credits) for d in per_day] == [
        ("2026-12-06", 0, 0),
        ("2026-12-07", 3, 20),
        ("2026-12-08", 0, 0),
    ]
    recent = await ledger.recent_jobs(GUILD, ALICE, limit=2)
    assert [job.job_key for job in recent] == ["a3", "a2"]
    assert await ledger.usage(GUILD + 1, days=7) == []


# --- the store -----------------------------------------------------------------------------


async def test_the_journal_is_append_only(ledger: SqliteLedger, db_path: Path) -> None:
    await funded(ledger, 10)
    conn = sqlite3.connect(db_path)
    try:
        for statement in ("UPDATE entries SET amount = 1000", "DELETE FROM entries"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()


async def test_the_database_refuses_an_inconsistent_balance_row(
    ledger: SqliteLedger, db_path: Path
) -> None:
    await funded(ledger, 10)
    conn = sqlite3.connect(db_path)
    try:
        for statement in (
            "UPDATE accounts SET available = available + 1",  # breaks conservation
            "UPDATE accounts SET available = -1, granted = granted - 11",  # negative
            "UPDATE accounts SET extra = available + 1",
        ):
            with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
                conn.execute(statement)
    finally:
        conn.close()


async def test_check_invariants_catches_a_cache_that_disagrees_with_the_journal(
    db_path: Path, clock: FakeClock
) -> None:
    store = await SqliteLedger.open(db_path, clock=clock)
    try:
        await store.grant(GUILD, ALICE, 10, actor=ADMIN)
        conn = sqlite3.connect(db_path)
        with conn:  # consistent on its own, but not what the journal says
            conn.execute("UPDATE accounts SET available = available + 5, granted = granted + 5")
        conn.close()
        problems = await store.check_invariants()
        assert len(problems) == 1 and "journal" in problems[0]
    finally:
        await store.close()


async def test_a_writer_locked_out_by_another_process_gets_ledger_busy(
    db_path: Path, clock: FakeClock
) -> None:
    store = await SqliteLedger.open(db_path, clock=clock, busy_timeout=0.05)
    other = sqlite3.connect(db_path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(LedgerBusy):
            await store.grant(GUILD, ALICE, 10, actor=ADMIN)
        other.execute("ROLLBACK")
        assert (await store.grant(GUILD, ALICE, 10, actor=ADMIN)).available == 10
    finally:
        other.close()
        await store.close()


async def test_a_closed_ledger_refuses_writes(db_path: Path) -> None:
    store = await SqliteLedger.open(db_path)
    await store.close()
    with pytest.raises(LedgerError):
        await store.grant(GUILD, ALICE, 1, actor=ADMIN)


async def test_the_store_uses_wal_and_the_chosen_durability(db_path: Path) -> None:
    store = await SqliteLedger.open(db_path)
    try:
        conn = sqlite3.connect(db_path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        conn.close()
    finally:
        await store.close()
    with pytest.raises(ValueError):
        await SqliteLedger.open(db_path, synchronous="OFF")  # type: ignore[arg-type]


async def test_close_commits_what_is_queued_and_survives_a_cancelled_writer(
    db_path: Path,
) -> None:
    store = await SqliteLedger.open(db_path)
    pending = asyncio.ensure_future(store.grant(GUILD, ALICE, 5, actor=ADMIN))
    await asyncio.sleep(0)
    await store.close()
    assert (await pending).available == 5
    store = await SqliteLedger.open(db_path)
    store._writer._task.cancel()  # as a shutdown that cancels every task would
    await store.close()
    store = await SqliteLedger.open(db_path)
    try:
        assert (await store.balance(GUILD, ALICE)).available == 5
    finally:
        await store.close()
