"""The credit ledger: per-member quotas over the paid account's balance.

Callers use :func:`open_ledger` and the :class:`~bot.core.ledger.store.Ledger` interface only;
the rules are described in ``docs/ledger.md``.
"""

from __future__ import annotations

from bot.config import Settings
from bot.core.errors import LedgerBusy
from bot.core.ledger.allowance import Period
from bot.core.ledger.sqlite import SqliteLedger
from bot.core.ledger.store import (
    AccountState,
    Balance,
    DaySpend,
    Entry,
    GuildAllowance,
    HoldResult,
    JobRecord,
    JobStatus,
    Ledger,
    PauseKind,
    RecoveryReport,
    UsageRow,
)

__all__ = [
    "AccountState",
    "Balance",
    "DaySpend",
    "Entry",
    "GuildAllowance",
    "HoldResult",
    "JobRecord",
    "JobStatus",
    "Ledger",
    "LedgerBusy",
    "PauseKind",
    "Period",
    "RecoveryReport",
    "UsageRow",
    "open_ledger",
]


async def open_ledger(settings: Settings) -> Ledger:
    """The store for ``DATABASE_URL`` (SQLite today), migrated and ready."""
    return await SqliteLedger.open(
        settings.sqlite_path,
        default_allowance=settings.default_allowance,
        account_floor=settings.account_floor,
    )
