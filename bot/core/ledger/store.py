"""The ledger's interface: what the bot, the queue and the CLI call, and what they get back.

Callers depend only on :class:`Ledger` and the dataclasses here, so a PostgreSQL store can be
added beside :mod:`bot.core.ledger.sqlite` without touching them. Every method is async and
every write is one atomic transaction. Amounts are whole credits (the bot's unit); the paid
account's balance and costs are :class:`~decimal.Decimal` in the account's own unit.

Errors: the rules raise :class:`~bot.core.errors.LedgerError` subclasses
(``InsufficientCredits``, ``UserBlocked``, ``GenerationPaused``, ``AccountLow``, and
:class:`LedgerBusy` below); nothing is changed when one is raised.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Protocol

from bot.core.ledger.allowance import Period
from bot.core.pricing import Cost


class JobStatus(enum.StrEnum):
    QUEUED = "queued"  # credits held, not sent yet
    RUNNING = "running"  # the request was (or is about to be) sent upstream
    SUCCEEDED = "succeeded"  # captured; the result is stored on disk
    DELIVERED = "delivered"  # the result was posted to Discord
    FAILED = "failed"  # released
    CANCELLED = "cancelled"  # released

    @property
    def is_open(self) -> bool:
        return self in (JobStatus.QUEUED, JobStatus.RUNNING)


class PauseKind(enum.StrEnum):
    OUT_OF_CREDITS = "out_of_credits"  # 406: lifts on a later reading above the floor
    MISCONFIGURED = "misconfigured"  # 401/404/405: only an admin lifts it
    ADMIN = "admin"  # paused by hand: only an admin lifts it


@dataclass(frozen=True)
class Balance:
    guild_id: int
    user_id: int
    available: int
    held: int
    spent: int
    granted: int  # everything ever put in: available + held + spent
    extra: int  # the part of `available` from grants (kept across refills, spent last)
    allowance: int  # the member's allowance per period (highest of the guild's and roles')
    period: Period
    next_refill: datetime | None
    blocked: bool
    blocked_reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "guild_id": self.guild_id,
            "user_id": self.user_id,
            "available": self.available,
            "held": self.held,
            "spent": self.spent,
            "granted": self.granted,
            "extra": self.extra,
            "allowance": self.allowance,
            "period": self.period.value,
            "next_refill": self.next_refill.isoformat() if self.next_refill else None,
            "blocked": self.blocked,
            "blocked_reason": self.blocked_reason,
        }


@dataclass(frozen=True)
class JobRecord:
    job_key: str
    guild_id: int
    user_id: int
    channel_id: int | None
    status: JobStatus
    params: dict[str, Any]
    cost: int
    extra_used: int  # how much of `cost` came from the member's extras (returned on release)
    account_cost: Decimal  # estimated spend of the paid account
    seed: int | None
    queued_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    delivered_at: datetime | None
    result_path: str | None
    balance_before: Decimal | None
    balance_after: Decimal | None
    error: str | None


@dataclass(frozen=True)
class HoldResult:
    job: JobRecord
    created: bool  # False: the key was seen before and this is that job (nothing new held)


@dataclass(frozen=True)
class Entry:
    id: int
    guild_id: int
    user_id: int
    kind: str
    amount: int
    extra: int
    job_key: str | None
    period_key: str | None
    actor: str
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class GuildAllowance:
    guild_id: int
    amount: int
    period: Period
    roles: Mapping[int, int]  # role id → allowance
    is_default: bool  # no admin has set it: the operator's SDBOT_DEFAULT_ALLOWANCE per day


@dataclass(frozen=True)
class AccountState:
    remaining: Decimal | None  # the last x-remaining-credits, None if never seen
    seen_at: datetime | None
    floor: Decimal
    open_cost: Decimal  # estimated account cost of queued and running jobs
    paused: bool
    pause_kind: PauseKind | None
    pause_reason: str | None
    paused_by: str | None
    paused_at: datetime | None
    resumed_by: str | None  # who lifted the last pause, and when
    resumed_at: datetime | None
    spent_today_credits: int  # member credits captured since 00:00 UTC
    spent_today_account: Decimal  # their estimated account cost
    jobs_today: int


@dataclass(frozen=True)
class UsageRow:
    user_id: int
    jobs: int  # finished jobs in the window
    succeeded: int
    failed: int  # failed or cancelled
    credits_spent: int


@dataclass(frozen=True)
class DaySpend:
    day: date
    jobs: int  # succeeded jobs
    credits: int


@dataclass(frozen=True)
class RecoveryReport:
    released: list[str]  # queued jobs: never sent
    released_unknown: list[str]  # running jobs without a stored result: outcome unknown
    captured: list[str]  # running jobs whose result was found on disk
    undelivered: list[JobRecord]  # results to deliver again


# Where the result of a job is stored, if it exists: used by recovery.
FindResult = Callable[[JobRecord], str | None]


class Ledger(Protocol):
    # --- members -------------------------------------------------------------------------
    async def balance(self, guild_id: int, user_id: int) -> Balance:
        """Read only; includes a refill that is due (applied at the member's next activity)."""
        ...

    async def refill(self, guild_id: int, user_id: int, role_ids: Collection[int]) -> Balance:
        """Remember the member's roles and apply a due refill (for ``/credits``)."""
        ...

    async def hold(
        self,
        guild_id: int,
        user_id: int,
        job_key: str,
        cost: Cost,
        params: Mapping[str, Any],
        *,
        role_ids: Collection[int] = (),
        channel_id: int | None = None,
    ) -> HoldResult: ...

    async def mark_running(
        self, job_key: str, *, balance_before: Decimal | None = None
    ) -> bool: ...

    async def capture(
        self,
        job_key: str,
        result_path: str,
        *,
        seed: int | None = None,
        balance_after: Decimal | None = None,
    ) -> bool: ...

    async def release(
        self,
        job_key: str,
        reason: str,
        *,
        cancelled: bool = False,
        balance_after: Decimal | None = None,
    ) -> bool: ...

    async def mark_delivered(self, job_key: str) -> bool: ...

    async def job(self, job_key: str) -> JobRecord | None: ...

    async def recent_jobs(self, guild_id: int, user_id: int, limit: int = 5) -> list[JobRecord]: ...

    async def undelivered(self, limit: int = 100) -> list[JobRecord]: ...

    async def open_jobs(self) -> list[JobRecord]: ...

    async def recover(self, find_result: FindResult) -> RecoveryReport: ...

    # --- admins --------------------------------------------------------------------------
    async def grant(
        self, guild_id: int, user_id: int, amount: int, *, actor: str, reason: str | None = None
    ) -> Balance: ...

    async def set_balance(
        self, guild_id: int, user_id: int, amount: int, *, actor: str, reason: str | None = None
    ) -> Balance: ...

    async def block(
        self, guild_id: int, user_id: int, *, actor: str, reason: str | None = None
    ) -> Balance: ...

    async def unblock(self, guild_id: int, user_id: int, *, actor: str) -> Balance: ...

    async def set_allowance(
        self, guild_id: int, amount: int, period: Period, *, actor: str
    ) -> GuildAllowance: ...

    async def set_role_allowance(
        self, guild_id: int, role_id: int, amount: int, *, actor: str
    ) -> GuildAllowance: ...

    async def guild_allowance(self, guild_id: int) -> GuildAllowance: ...

    async def journal(self, guild_id: int, user_id: int, limit: int = 50) -> list[Entry]: ...

    async def usage(self, guild_id: int, days: int, limit: int = 20) -> list[UsageRow]: ...

    async def spend_per_day(self, guild_id: int, days: int) -> list[DaySpend]: ...

    # --- the paid account ----------------------------------------------------------------
    async def record_account_balance(
        self, remaining: Decimal, seen_at: datetime | None = None, *, successful: bool = True
    ) -> AccountState:
        """Store the x-remaining-credits of a response (an older reading never replaces a newer
        one). A ``successful`` (200) reading above the floor lifts an out-of-credits pause."""
        ...

    async def pause(self, reason: str, *, kind: PauseKind, actor: str) -> AccountState: ...

    async def resume(self, *, actor: str) -> AccountState: ...

    async def account_state(self) -> AccountState: ...

    # --- operations ----------------------------------------------------------------------
    async def check_invariants(self) -> list[str]:
        """Every broken invariant, described; empty when the ledger is consistent."""
        ...

    async def close(self) -> None: ...
