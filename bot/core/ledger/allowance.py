"""Allowance periods and the refill rule: pure functions of time and balances.

Periods are in UTC:

* ``day``   — starts at 00:00 UTC;
* ``week``  — starts Monday 00:00 UTC (ISO weeks);
* ``month`` — starts on the 1st at 00:00 UTC;
* ``none``  — no automatic refill; the member has only what admins grant.

A refill is due at a member's first activity in a period that **began after the period of
their last refill** (compared by first day). So each period refills at most once, even when an
admin switches the kind of period back and forth: switching weekly → daily refills on the day
of the switch (today began after this week's Monday), daily → weekly waits for next Monday.
The journal names each refill by a key such as ``day:2026-11-27`` (the kind and its first day).

The refill rule (docs/ledger.md, "Unused credits"): a member's balance has two parts, the
period's allowance and *extra* credits from grants. At the first activity of a new period the
allowance part is topped **up to** the allowance — unused allowance never stacks — while extra
credits are kept untouched. Spending uses the allowance part first, then the extras.
"""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta


class Period(enum.StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    NONE = "none"


def period_start(period: Period, now: datetime) -> date | None:
    """The first day (UTC) of the period containing ``now``; ``None`` for ``none``."""
    today = now.astimezone(UTC).date()
    if period is Period.DAY:
        return today
    if period is Period.WEEK:
        return today - timedelta(days=today.weekday())
    if period is Period.MONTH:
        return today.replace(day=1)
    return None


def next_period_start(period: Period, now: datetime) -> datetime | None:
    """When the next period begins (UTC midnight); ``None`` for ``none``."""
    start = period_start(period, now)
    if start is None:
        return None
    if period is Period.DAY:
        following = start + timedelta(days=1)
    elif period is Period.WEEK:
        following = start + timedelta(weeks=1)
    else:
        following = (start + timedelta(days=32)).replace(day=1)
    return datetime(following.year, following.month, following.day, tzinfo=UTC)


def due_refill(period: Period, now: datetime, last_refill_start: date | None) -> date | None:
    """The start of the period to refill now, or ``None`` when no refill is due."""
    start = period_start(period, now)
    if start is None or (last_refill_start is not None and start <= last_refill_start):
        return None
    return start


def refill_amount(allowance: int, available: int, extra: int) -> int:
    """Credits a refill adds: the allowance part (available − extra) topped up to ``allowance``."""
    return max(0, allowance - (available - extra))


def debit_extra(available: int, extra: int, cost: int) -> int:
    """How much of ``cost`` comes out of the extras: the allowance part is spent first."""
    return max(0, cost - (available - extra))
