from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from bot.core.ledger.allowance import (
    Period,
    debit_extra,
    due_refill,
    next_period_start,
    period_start,
    refill_amount,
)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("period", "moment", "start", "following"),
    [
        (Period.DAY, "2026-11-27 23:59:59", date(2026, 11, 27), "2026-11-28"),
        (Period.DAY, "2026-11-28 00:00:00", date(2026, 11, 28), "2026-11-29"),
        (Period.WEEK, "2026-11-27 12:00:00", date(2026, 11, 23), "2026-11-30"),  # Fri → Mon
        (Period.WEEK, "2026-11-30 00:00:00", date(2026, 11, 30), "2026-12-07"),  # Monday
        (Period.WEEK, "2026-11-29 23:59:59", date(2026, 11, 23), "2026-11-30"),  # Sunday
        (Period.WEEK, "2027-01-01 08:00:00", date(2026, 12, 28), "2027-01-04"),  # across years
        (Period.MONTH, "2026-12-31 23:59:59", date(2026, 12, 1), "2027-01-01"),
        (Period.MONTH, "2028-02-29 10:00:00", date(2028, 2, 1), "2028-03-01"),  # leap year
        (Period.MONTH, "2026-01-31 10:00:00", date(2026, 1, 1), "2026-02-01"),
    ],
)
def test_periods_are_utc_calendar_periods(
    period: Period, moment: str, start: date, following: str
) -> None:
    now = at(moment)
    assert period_start(period, now) == start
    assert next_period_start(period, now) == at(following + " 00:00:00")


def test_period_boundaries_use_utc_not_local_time() -> None:
    from datetime import timedelta, timezone

    # 01:00 on the 28th at UTC+2 is still the 27th in UTC.
    local = datetime(2026, 11, 28, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    assert period_start(Period.DAY, local) == date(2026, 11, 27)


def test_no_period_means_no_refill() -> None:
    now = at("2026-11-27 12:00:00")
    assert period_start(Period.NONE, now) is None
    assert next_period_start(Period.NONE, now) is None
    assert due_refill(Period.NONE, now, None) is None


def test_a_refill_is_due_once_per_period_even_across_period_switches() -> None:
    friday = at("2026-11-27 12:00:00")
    assert due_refill(Period.DAY, friday, None) == date(2026, 11, 27)  # a new member
    assert due_refill(Period.DAY, friday, date(2026, 11, 27)) is None  # already today
    assert due_refill(Period.DAY, friday, date(2026, 11, 26)) == date(2026, 11, 27)
    # daily → weekly: this week began before today's refill: wait for Monday.
    assert due_refill(Period.WEEK, friday, date(2026, 11, 27)) is None
    assert due_refill(Period.WEEK, at("2026-11-30 00:00:00"), date(2026, 11, 27)) == date(
        2026, 11, 30
    )
    # weekly → daily: today began after Monday's refill.
    assert due_refill(Period.DAY, friday, date(2026, 11, 23)) == date(2026, 11, 27)


@pytest.mark.parametrize(
    ("allowance", "available", "extra", "added"),
    [
        (100, 0, 0, 100),  # empty: a full allowance
        (100, 30, 0, 70),  # unused allowance does not stack: topped up to 100
        (100, 100, 0, 0),
        (100, 150, 50, 0),  # extras do not count against the allowance
        (100, 80, 50, 70),  # 30 allowance left + 50 extra → 100 allowance + 50 extra
        (50, 120, 0, 0),  # allowance lowered: what is there is kept, nothing added
        (0, 10, 10, 0),
    ],
)
def test_refill_tops_the_allowance_part_up(
    allowance: int, available: int, extra: int, added: int
) -> None:
    assert refill_amount(allowance, available, extra) == added


@pytest.mark.parametrize(
    ("available", "extra", "cost", "from_extra"),
    [(100, 0, 10, 0), (100, 50, 40, 0), (100, 50, 60, 10), (50, 50, 20, 20), (30, 10, 30, 10)],
)
def test_spending_uses_the_allowance_before_the_extras(
    available: int, extra: int, cost: int, from_extra: int
) -> None:
    assert debit_extra(available, extra, cost) == from_extra
