"""The ledger on one SQLite file, through aiosqlite.

Connections: one **writer** and one **reader**, both aiosqlite (each runs its sqlite3
connection on its own thread), WAL, ``busy_timeout``, ``foreign_keys=ON`` and the chosen
``synchronous`` (FULL by default: an acknowledged capture survives a power loss).

Writes (group commit): every write is a plain function ``fn(sqlite3.Connection) -> T`` that
does its reads and conditional updates. A single writer task takes the writes waiting in its
queue (up to ``max_batch``), and runs them on the writer's thread in **one** hop as one
``BEGIN IMMEDIATE … COMMIT``, each op inside its own ``SAVEPOINT``: an op that raises (say
``InsufficientCredits``) is rolled back alone, the others commit together. A caller's future
is resolved only after the COMMIT. Only the writer task touches the writer connection, so
transactions never interleave (the failure mode of a shared aiosqlite connection), and
``BEGIN IMMEDIATE`` takes SQLite's write lock up front, so another process (``sdbot quota``)
waits on the busy timeout instead of failing with ``SQLITE_BUSY_SNAPSHOT``. An op that was
queued runs even if its caller is cancelled: a capture or release is never lost halfway.

Why one hop per batch: aiosqlite's statement API costs a thread hop (~0.1 ms) per statement;
a hold is ~10 statements. Handing the connection's thread the whole transaction as one
callable (aiosqlite's ``Connection._execute``, the primitive behind all of its methods; the
version is pinned to 0.22) costs one hop, and batching shares one commit (one fsync with
FULL) between all the ops waiting. Measured with ``bench/ledger.py``; figures in docs/ledger.md.

Reads run the same way on the reader connection, in one read transaction (a snapshot).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, Decimal
from functools import partial
from pathlib import Path
from typing import Any, Literal, TypeVar

import aiosqlite

from bot.core.errors import (
    AccountLow,
    GenerationPaused,
    InsufficientCredits,
    LedgerBusy,
    LedgerError,
    UnknownJob,
    UserBlocked,
)
from bot.core.ledger import allowance as rules
from bot.core.ledger.allowance import Period
from bot.core.ledger.migrate import (
    BUSY_TIMEOUT_S,
    MIGRATIONS_DIR,
    check_current,
    is_busy,
    migrate,
)
from bot.core.ledger.store import (
    AccountState,
    Balance,
    DaySpend,
    Entry,
    FindResult,
    GuildAllowance,
    HoldResult,
    JobRecord,
    JobStatus,
    PauseKind,
    RecoveryReport,
    UsageRow,
)
from bot.core.pricing import Cost

T = TypeVar("T")
Synchronous = Literal["FULL", "NORMAL"]
Tx = Callable[[sqlite3.Connection], T]

MICROS = Decimal(1_000_000)
_CAPTURED = (JobStatus.SUCCEEDED.value, JobStatus.DELIVERED.value)


@dataclass(frozen=True)
class _Rules:
    """What a transaction needs besides the connection."""

    now: datetime
    default_allowance: int
    floor: Decimal


# --- conversions ---------------------------------------------------------------------------


def _ts(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _dt(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _date(text: str | None) -> date | None:
    return None if text is None else date.fromisoformat(text)


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _micros(amount: Decimal) -> int:
    # Round up: the guard must never under-estimate what a job costs the account.
    return int((amount * MICROS).to_integral_value(rounding=ROUND_CEILING))


def _job(row: sqlite3.Row) -> JobRecord:
    return JobRecord(
        job_key=row["job_key"],
        guild_id=row["guild_id"],
        user_id=row["user_id"],
        channel_id=row["channel_id"],
        status=JobStatus(row["status"]),
        params=json.loads(row["params"]),
        cost=row["cost"],
        extra_used=row["extra_used"],
        account_cost=Decimal(row["account_micros"]) / MICROS,
        seed=row["seed"],
        queued_at=datetime.fromisoformat(row["queued_at"]).replace(tzinfo=UTC),
        started_at=_dt(row["started_at"]),
        finished_at=_dt(row["finished_at"]),
        delivered_at=_dt(row["delivered_at"]),
        result_path=row["result_path"],
        balance_before=_dec(row["balance_before"]),
        balance_after=_dec(row["balance_after"]),
        error=row["error"],
    )


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(
        id=row["id"],
        guild_id=row["guild_id"],
        user_id=row["user_id"],
        kind=row["kind"],
        amount=row["amount"],
        extra=row["extra"],
        job_key=row["job_key"],
        period_key=row["period_key"],
        actor=row["actor"],
        reason=row["reason"],
        created_at=datetime.fromisoformat(row["created_at"]).replace(tzinfo=UTC),
    )


# --- transaction building blocks (run on a connection's thread) -----------------------------


def _journal(
    conn: sqlite3.Connection,
    r: _Rules,
    guild_id: int,
    user_id: int,
    kind: str,
    amount: int,
    actor: str,
    *,
    extra: int = 0,
    job_key: str | None = None,
    period_key: str | None = None,
    reason: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO entries (guild_id, user_id, kind, amount, extra, job_key, period_key,"
        " actor, reason, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (guild_id, user_id, kind, amount, extra, job_key, period_key, actor, reason, _ts(r.now)),
    )


def _account(
    conn: sqlite3.Connection,
    r: _Rules,
    guild_id: int,
    user_id: int,
    role_ids: Collection[int] | None = None,
) -> sqlite3.Row:
    """The member's row, created on first use; ``role_ids`` (if given) replace the stored."""
    key = (guild_id, user_id)
    row: sqlite3.Row | None = conn.execute(
        "SELECT * FROM accounts WHERE guild_id = ? AND user_id = ?", key
    ).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO accounts (guild_id, user_id, created_at) VALUES (?, ?, ?)",
            (*key, _ts(r.now)),
        )
    roles = None if role_ids is None else json.dumps(sorted(set(role_ids)))
    if row is None or (roles is not None and roles != row["role_ids"]):
        if roles is not None:
            conn.execute(
                "UPDATE accounts SET role_ids = ? WHERE guild_id = ? AND user_id = ?",
                (roles, *key),
            )
        row = conn.execute(
            "SELECT * FROM accounts WHERE guild_id = ? AND user_id = ?", key
        ).fetchone()
    assert row is not None
    return row


def _allowance(
    conn: sqlite3.Connection, r: _Rules, guild_id: int, role_ids_json: str
) -> tuple[int, Period]:
    """The member's allowance per period: the highest of the guild's and their roles'."""
    row = conn.execute(
        "SELECT amount, period FROM guild_allowances WHERE guild_id = ?", (guild_id,)
    ).fetchone()
    amount, period = (row[0], Period(row[1])) if row else (r.default_allowance, Period.DAY)
    if role_ids_json != "[]":
        best = conn.execute(
            "SELECT MAX(amount) FROM role_allowances WHERE guild_id = ?"
            " AND role_id IN (SELECT value FROM json_each(?))",
            (guild_id, role_ids_json),
        ).fetchone()[0]
        amount = max(amount, best or 0)
    return int(amount), period


def _refill(conn: sqlite3.Connection, r: _Rules, acct: sqlite3.Row) -> sqlite3.Row:
    """Apply the member's refill if a new period began since the last one (once per period)."""
    amount, period = _allowance(conn, r, acct["guild_id"], acct["role_ids"])
    start = rules.due_refill(period, r.now, _date(acct["refilled_for"]))
    if start is None:
        return acct
    added = rules.refill_amount(amount, acct["available"], acct["extra"])
    row: sqlite3.Row = conn.execute(
        "UPDATE accounts SET available = available + ?, granted = granted + ?, refilled_for = ?"
        " WHERE guild_id = ? AND user_id = ? RETURNING *",
        (added, added, start.isoformat(), acct["guild_id"], acct["user_id"]),
    ).fetchone()
    if added:
        reason = f"{period.value} allowance of {amount}"
        _journal(
            conn,
            r,
            acct["guild_id"],
            acct["user_id"],
            "refill",
            added,
            "system:refill",
            period_key=f"{period.value}:{start.isoformat()}",
            reason=reason,
        )
    return row


# An account before its first activity (reads do not create rows).
_NEW_ACCOUNT: Mapping[str, Any] = {
    "available": 0,
    "held": 0,
    "spent": 0,
    "granted": 0,
    "extra": 0,
    "refilled_for": None,
    "role_ids": "[]",
    "blocked": 0,
    "blocked_reason": None,
}


def _balance(conn: sqlite3.Connection, r: _Rules, guild_id: int, user_id: int) -> Balance:
    """The member's balance as they will see it, including a refill that is due."""
    acct = conn.execute(
        "SELECT * FROM accounts WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
    ).fetchone()
    values: Mapping[str, Any] = dict(acct) if acct is not None else _NEW_ACCOUNT
    amount, period = _allowance(conn, r, guild_id, values["role_ids"])
    due = 0
    if rules.due_refill(period, r.now, _date(values["refilled_for"])) is not None:
        due = rules.refill_amount(amount, values["available"], values["extra"])
    return Balance(
        guild_id=guild_id,
        user_id=user_id,
        available=values["available"] + due,
        held=values["held"],
        spent=values["spent"],
        granted=values["granted"] + due,
        extra=values["extra"],
        allowance=amount,
        period=period,
        next_refill=rules.next_period_start(period, r.now),
        blocked=bool(values["blocked"]),
        blocked_reason=values["blocked_reason"],
    )


def _guard(conn: sqlite3.Connection) -> sqlite3.Row:
    row: sqlite3.Row = conn.execute("SELECT * FROM account_guard WHERE id = 1").fetchone()
    return row


def _open_micros(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT COALESCE(SUM(account_micros), 0) FROM jobs WHERE status IN ('queued', 'running')"
    ).fetchone()
    return int(row[0])


def _check_account(conn: sqlite3.Connection, r: _Rules, account_cost: Decimal) -> None:
    guard = _guard(conn)
    if guard["paused_kind"] is not None:
        raise GenerationPaused(guard["paused_reason"])
    if guard["remaining"] is None:
        return  # never seen: the first job's response tells us (documented in docs/ledger.md)
    headroom = Decimal(guard["remaining"]) - r.floor - Decimal(_open_micros(conn)) / MICROS
    if headroom < account_cost:
        raise AccountLow()


# --- transactions --------------------------------------------------------------------------


def _tx_hold(
    conn: sqlite3.Connection,
    r: _Rules,
    guild_id: int,
    user_id: int,
    job_key: str,
    cost: Cost,
    params: str,
    seed: int | None,
    role_ids: Collection[int] | None,
    channel_id: int | None,
) -> HoldResult:
    existing = conn.execute("SELECT * FROM jobs WHERE job_key = ?", (job_key,)).fetchone()
    if existing is not None:
        return HoldResult(_job(existing), created=False)
    acct = _account(conn, r, guild_id, user_id, role_ids)
    if acct["blocked"]:
        raise UserBlocked(acct["blocked_reason"])
    _check_account(conn, r, cost.account)
    acct = _refill(conn, r, acct)
    extra_used = rules.debit_extra(acct["available"], acct["extra"], cost.credits)
    debited = conn.execute(
        "UPDATE accounts SET available = available - ?, held = held + ?, extra = extra - ?"
        " WHERE guild_id = ? AND user_id = ? AND available >= ? RETURNING available",
        (cost.credits, cost.credits, extra_used, guild_id, user_id, cost.credits),
    ).fetchone()
    if debited is None:
        raise InsufficientCredits(cost.credits, acct["available"])
    job = conn.execute(
        "INSERT INTO jobs (job_key, guild_id, user_id, channel_id, status, params, cost,"
        " extra_used, account_micros, seed, queued_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?,"
        " ?, ?) RETURNING *",
        (
            job_key,
            guild_id,
            user_id,
            channel_id,
            params,
            cost.credits,
            extra_used,
            _micros(cost.account),
            seed,
            _ts(r.now),
        ),
    ).fetchone()
    _journal(
        conn,
        r,
        guild_id,
        user_id,
        "hold",
        cost.credits,
        "system:hold",
        extra=-extra_used,
        job_key=job_key,
    )
    return HoldResult(_job(job), created=True)


def _require_job(conn: sqlite3.Connection, job_key: str) -> None:
    if conn.execute("SELECT 1 FROM jobs WHERE job_key = ?", (job_key,)).fetchone() is None:
        raise UnknownJob(f"No job with key {job_key}.")


def _tx_finish(
    conn: sqlite3.Connection,
    r: _Rules,
    job_key: str,
    status: JobStatus,
    result_path: str | None,
    seed: int | None,
    balance_after: Decimal | None,
    error: str | None,
) -> bool:
    """Capture (→ succeeded) or release (→ failed/cancelled) an open job, exactly once."""
    job = conn.execute(
        "UPDATE jobs SET status = ?, finished_at = ?, result_path = ?, seed = COALESCE(?, seed),"
        " balance_after = ?, error = ? WHERE job_key = ? AND status IN ('queued', 'running')"
        " RETURNING guild_id, user_id, cost, extra_used",
        (
            status.value,
            _ts(r.now),
            result_path,
            seed,
            None if balance_after is None else str(balance_after),
            error,
            job_key,
        ),
    ).fetchone()
    if job is None:
        _require_job(conn, job_key)
        return False
    guild_id, user_id, cost, extra_used = job
    if status is JobStatus.SUCCEEDED:
        conn.execute(
            "UPDATE accounts SET held = held - ?, spent = spent + ?"
            " WHERE guild_id = ? AND user_id = ?",
            (cost, cost, guild_id, user_id),
        )
        _journal(conn, r, guild_id, user_id, "capture", cost, "system:capture", job_key=job_key)
    else:
        conn.execute(
            "UPDATE accounts SET held = held - ?, available = available + ?, extra = extra + ?"
            " WHERE guild_id = ? AND user_id = ?",
            (cost, cost, extra_used, guild_id, user_id),
        )
        _journal(
            conn,
            r,
            guild_id,
            user_id,
            "release",
            cost,
            "system:release",
            extra=extra_used,
            job_key=job_key,
            reason=error,
        )
    return True


def _tx_mark(
    conn: sqlite3.Connection,
    r: _Rules,
    job_key: str,
    status: JobStatus,
    balance_before: Decimal | None,
) -> bool:
    """queued → running, or succeeded → delivered; False if the job is not in the from-state."""
    if status is JobStatus.RUNNING:
        sql = (
            "UPDATE jobs SET status = 'running', started_at = ?, balance_before = ?"
            " WHERE job_key = ? AND status = 'queued'"
        )
        args: tuple[Any, ...] = (
            _ts(r.now),
            None if balance_before is None else str(balance_before),
        )
    else:
        sql = (
            "UPDATE jobs SET status = 'delivered', delivered_at = ?"
            " WHERE job_key = ? AND status = 'succeeded'"
        )
        args = (_ts(r.now),)
    if conn.execute(sql, (*args, job_key)).rowcount == 1:
        return True
    _require_job(conn, job_key)
    return False


def _tx_grant(
    conn: sqlite3.Connection,
    r: _Rules,
    guild_id: int,
    user_id: int,
    amount: int,
    actor: str,
    reason: str | None,
) -> Balance:
    """A positive grant adds extra credits; a negative one takes credits back, extras first."""
    acct = _account(conn, r, guild_id, user_id)
    if amount > 0:
        kind, extra = "grant", amount
    elif amount < 0:
        if acct["available"] < -amount:
            raise LedgerError(
                f"Cannot take {-amount} credits: the member has {acct['available']} available."
            )
        kind, extra = "adjust", -min(acct["extra"], -amount)
    else:
        raise LedgerError("The amount must not be 0.")
    conn.execute(
        "UPDATE accounts SET available = available + ?, granted = granted + ?, extra = extra + ?"
        " WHERE guild_id = ? AND user_id = ?",
        (amount, amount, extra, guild_id, user_id),
    )
    _journal(conn, r, guild_id, user_id, kind, amount, actor, extra=extra, reason=reason)
    return _balance(conn, r, guild_id, user_id)


def _tx_set(
    conn: sqlite3.Connection,
    r: _Rules,
    guild_id: int,
    user_id: int,
    amount: int,
    actor: str,
    reason: str | None,
) -> Balance:
    """Set ``available`` to ``amount``: what is left of the allowance stays allowance (up to
    ``amount``), the rest becomes extra. A due refill is applied first, so set is final."""
    if amount < 0:
        raise LedgerError("A balance cannot be negative.")
    acct = _refill(conn, r, _account(conn, r, guild_id, user_id))
    allowance_part = min(acct["available"] - acct["extra"], amount)
    new_extra = amount - allowance_part
    diff = amount - acct["available"]
    conn.execute(
        "UPDATE accounts SET available = ?, granted = granted + ?, extra = ?"
        " WHERE guild_id = ? AND user_id = ?",
        (amount, diff, new_extra, guild_id, user_id),
    )
    _journal(
        conn,
        r,
        guild_id,
        user_id,
        "set",
        diff,
        actor,
        extra=new_extra - acct["extra"],
        reason=reason,
    )
    return _balance(conn, r, guild_id, user_id)


def _tx_refill(
    conn: sqlite3.Connection, r: _Rules, guild_id: int, user_id: int, role_ids: Collection[int]
) -> Balance:
    _refill(conn, r, _account(conn, r, guild_id, user_id, role_ids))
    return _balance(conn, r, guild_id, user_id)


def _tx_block(
    conn: sqlite3.Connection,
    r: _Rules,
    guild_id: int,
    user_id: int,
    blocked: bool,
    actor: str,
    reason: str | None,
) -> Balance:
    _account(conn, r, guild_id, user_id)
    conn.execute(
        "UPDATE accounts SET blocked = ?, blocked_reason = ?, blocked_by = ?, blocked_at = ?"
        " WHERE guild_id = ? AND user_id = ?",
        (
            int(blocked),
            reason if blocked else None,
            actor if blocked else None,
            _ts(r.now) if blocked else None,
            guild_id,
            user_id,
        ),
    )
    _journal(conn, r, guild_id, user_id, "block" if blocked else "unblock", 0, actor, reason=reason)
    return _balance(conn, r, guild_id, user_id)


def _read_guild_allowance(conn: sqlite3.Connection, r: _Rules, guild_id: int) -> GuildAllowance:
    row = conn.execute(
        "SELECT amount, period FROM guild_allowances WHERE guild_id = ?", (guild_id,)
    ).fetchone()
    roles = conn.execute(
        "SELECT role_id, amount FROM role_allowances WHERE guild_id = ? ORDER BY role_id",
        (guild_id,),
    ).fetchall()
    return GuildAllowance(
        guild_id=guild_id,
        amount=row[0] if row else r.default_allowance,
        period=Period(row[1]) if row else Period.DAY,
        roles={role: amount for role, amount in roles},
        is_default=row is None,
    )


def _tx_set_allowance(
    conn: sqlite3.Connection, r: _Rules, guild_id: int, amount: int, period: Period, actor: str
) -> GuildAllowance:
    if amount < 0:
        raise LedgerError("An allowance cannot be negative.")
    conn.execute(
        "INSERT INTO guild_allowances (guild_id, amount, period, updated_by, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id) DO UPDATE SET amount = excluded.amount,"
        " period = excluded.period, updated_by = excluded.updated_by,"
        " updated_at = excluded.updated_at",
        (guild_id, amount, period.value, actor, _ts(r.now)),
    )
    return _read_guild_allowance(conn, r, guild_id)


def _tx_set_role_allowance(
    conn: sqlite3.Connection, r: _Rules, guild_id: int, role_id: int, amount: int, actor: str
) -> GuildAllowance:
    if amount < 0:
        raise LedgerError("An allowance cannot be negative.")
    if amount == 0:
        conn.execute(
            "DELETE FROM role_allowances WHERE guild_id = ? AND role_id = ?", (guild_id, role_id)
        )
    else:
        conn.execute(
            "INSERT INTO role_allowances (guild_id, role_id, amount, updated_by, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (guild_id, role_id) DO UPDATE SET"
            " amount = excluded.amount, updated_by = excluded.updated_by,"
            " updated_at = excluded.updated_at",
            (guild_id, role_id, amount, actor, _ts(r.now)),
        )
    return _read_guild_allowance(conn, r, guild_id)


def _read_account_state(conn: sqlite3.Connection, r: _Rules) -> AccountState:
    guard = _guard(conn)
    today = _ts(datetime.combine(r.now.astimezone(UTC).date(), datetime.min.time(), UTC))
    jobs, credits, micros = conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(cost), 0), COALESCE(SUM(account_micros), 0) FROM jobs"
        " WHERE status IN ('succeeded', 'delivered') AND finished_at >= ?",
        (today,),
    ).fetchone()
    kind = guard["paused_kind"]
    return AccountState(
        remaining=_dec(guard["remaining"]),
        seen_at=_dt(guard["seen_at"]),
        floor=r.floor,
        open_cost=Decimal(_open_micros(conn)) / MICROS,
        paused=kind is not None,
        pause_kind=None if kind is None else PauseKind(kind),
        pause_reason=guard["paused_reason"],
        paused_by=guard["paused_by"],
        paused_at=_dt(guard["paused_at"]),
        resumed_by=guard["resumed_by"],
        resumed_at=_dt(guard["resumed_at"]),
        spent_today_credits=credits,
        spent_today_account=Decimal(micros) / MICROS,
        jobs_today=jobs,
    )


def _tx_record_balance(
    conn: sqlite3.Connection, r: _Rules, remaining: Decimal, seen_at: datetime, successful: bool
) -> AccountState:
    # Responses can arrive out of order: only a newer reading replaces the stored one.
    conn.execute(
        "UPDATE account_guard SET remaining = ?, seen_at = ?"
        " WHERE id = 1 AND (seen_at IS NULL OR seen_at <= ?)",
        (str(remaining), _ts(seen_at), _ts(seen_at)),
    )
    if successful and remaining > r.floor:
        # A 406 pause lifts on a successful reading above the floor taken after the pause.
        conn.execute(
            "UPDATE account_guard SET paused_kind = NULL, paused_reason = NULL,"
            " paused_by = NULL, paused_at = NULL"
            " WHERE id = 1 AND paused_kind = 'out_of_credits' AND paused_at <= ?",
            (_ts(seen_at),),
        )
    return _read_account_state(conn, r)


def _tx_pause(
    conn: sqlite3.Connection, r: _Rules, reason: str, kind: PauseKind, actor: str
) -> AccountState:
    # A 406 never replaces a pause that only an admin may lift.
    conn.execute(
        "UPDATE account_guard SET paused_kind = ?, paused_reason = ?, paused_by = ?,"
        " paused_at = ? WHERE id = 1 AND (? <> 'out_of_credits' OR paused_kind IS NULL"
        " OR paused_kind = 'out_of_credits')",
        (kind.value, reason, actor, _ts(r.now), kind.value),
    )
    return _read_account_state(conn, r)


def _tx_resume(conn: sqlite3.Connection, r: _Rules, actor: str) -> AccountState:
    conn.execute(
        "UPDATE account_guard SET paused_kind = NULL, paused_reason = NULL, paused_by = NULL,"
        " paused_at = NULL, resumed_by = ?, resumed_at = ?"
        " WHERE id = 1 AND paused_kind IS NOT NULL",
        (actor, _ts(r.now)),
    )
    return _read_account_state(conn, r)


def _window_start(r: _Rules, days: int) -> date:
    """The first day of a report over ``days`` days: today (UTC) and the days before it."""
    return r.now.astimezone(UTC).date() - timedelta(days=max(days, 1) - 1)


def _read_usage(
    conn: sqlite3.Connection, r: _Rules, guild_id: int, days: int, limit: int
) -> list[UsageRow]:
    rows = conn.execute(
        "SELECT user_id, COUNT(*),"
        " SUM(status IN ('succeeded', 'delivered')), SUM(status IN ('failed', 'cancelled')),"
        " SUM(CASE WHEN status IN ('succeeded', 'delivered') THEN cost ELSE 0 END) AS spent"
        " FROM jobs WHERE guild_id = ? AND finished_at >= ?"
        " GROUP BY user_id ORDER BY spent DESC, COUNT(*) DESC, user_id LIMIT ?",
        (guild_id, _window_start(r, days).isoformat(), limit),
    ).fetchall()
    return [UsageRow(*row) for row in rows]


def _read_spend_per_day(
    conn: sqlite3.Connection, r: _Rules, guild_id: int, days: int
) -> list[DaySpend]:
    start = _window_start(r, days)
    rows = conn.execute(
        "SELECT substr(finished_at, 1, 10), COUNT(*), SUM(cost) FROM jobs"
        " WHERE guild_id = ? AND status IN ('succeeded', 'delivered') AND finished_at >= ?"
        " GROUP BY 1",
        (guild_id, start.isoformat()),
    ).fetchall()
    found = {day: (jobs, credits) for day, jobs, credits in rows}
    result = []
    day = start
    while day <= r.now.astimezone(UTC).date():
        jobs, credits = found.get(day.isoformat(), (0, 0))
        result.append(DaySpend(day, jobs, credits))
        day += timedelta(days=1)
    return result


def _read_invariants(conn: sqlite3.Connection, r: _Rules) -> list[str]:
    """I1–I4 and I7 of docs/ledger.md, checked against the journal and the jobs."""
    problems = []
    rebuilt = conn.execute(
        "SELECT a.guild_id, a.user_id, a.available, a.held, a.spent, a.granted, a.extra,"
        " COALESCE(e.granted, 0), COALESCE(e.held, 0), COALESCE(e.spent, 0),"
        " COALESCE(e.extra, 0), COALESCE(j.held, 0), COALESCE(j.spent, 0)"
        " FROM accounts a LEFT JOIN (SELECT guild_id, user_id,"
        "  SUM(CASE WHEN kind IN ('grant', 'adjust', 'set', 'refill') THEN amount END) AS granted,"
        "  SUM(CASE kind WHEN 'hold' THEN amount WHEN 'capture' THEN -amount"
        "   WHEN 'release' THEN -amount END) AS held,"
        "  SUM(CASE WHEN kind = 'capture' THEN amount END) AS spent, SUM(extra) AS extra"
        "  FROM entries GROUP BY guild_id, user_id) e USING (guild_id, user_id)"
        " LEFT JOIN (SELECT guild_id, user_id,"
        "  SUM(CASE WHEN status IN ('queued', 'running') THEN cost END) AS held,"
        "  SUM(CASE WHEN status IN ('succeeded', 'delivered') THEN cost END) AS spent"
        "  FROM jobs GROUP BY guild_id, user_id) j USING (guild_id, user_id)"
    ).fetchall()
    for g, u, avail, held, spent, granted, extra, jg, jh, js, jx, oh, os_ in rebuilt:
        who = f"account ({g}, {u})"
        if avail < 0 or held < 0 or spent < 0 or not 0 <= extra <= avail:
            problems.append(f"{who}: negative part: {avail=} {held=} {spent=} {extra=}")
        if avail + held + spent != granted:
            problems.append(f"{who}: available+held+spent={avail + held + spent} != {granted=}")
        if (granted, held, spent, extra) != (jg, jh, js, jx):
            problems.append(
                f"{who}: cached (granted, held, spent, extra)={(granted, held, spent, extra)}"
                f" != journal {(jg, jh, js, jx)}"
            )
        if (held, spent) != (oh, os_):
            problems.append(f"{who}: (held, spent)={(held, spent)} != jobs {(oh, os_)}")
    per_job = conn.execute(
        "SELECT j.job_key, j.status, j.cost, j.result_path,"
        " SUM(e.kind = 'hold'), SUM(e.kind = 'capture'), SUM(e.kind = 'release'),"
        " SUM(CASE WHEN e.amount <> j.cost THEN 1 ELSE 0 END)"
        " FROM jobs j LEFT JOIN entries e ON e.job_key = j.job_key GROUP BY j.job_key"
    ).fetchall()
    for key, status, _cost, result, holds, captures, releases, wrong in per_job:
        expected = (
            (1, 0, 0)
            if status in ("queued", "running")
            else (1, 1, 0)
            if status in _CAPTURED
            else (1, 0, 1)
        )
        if (holds, captures, releases) != expected:
            problems.append(
                f"job {key} ({status}): entries hold/capture/release={(holds, captures, releases)}"
            )
        if wrong:
            problems.append(f"job {key}: {wrong} entries with an amount other than its cost")
        if status in _CAPTURED and not result:
            problems.append(f"job {key}: captured without a stored result")
    return problems


# --- the writer ----------------------------------------------------------------------------


def _run_batch(conn: sqlite3.Connection, ops: list[Tx[Any]]) -> list[tuple[bool, Any]]:
    """One transaction for the ops; each in a SAVEPOINT so a failing op rolls back alone."""
    outcomes: list[tuple[bool, Any]] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for op in ops:
            conn.execute("SAVEPOINT op")
            try:
                outcomes.append((True, op(conn)))
            except Exception as error:
                conn.execute("ROLLBACK TO op")
                outcomes.append((False, error))
            conn.execute("RELEASE op")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


def _run_read(conn: sqlite3.Connection, op: Tx[T]) -> T:
    conn.execute("BEGIN")  # one snapshot for all of the op's statements
    try:
        return op(conn)
    finally:
        conn.execute("COMMIT")


async def _on_thread(conn: aiosqlite.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    # aiosqlite's own primitive: run a callable on the connection's thread (see the docstring).
    result: T = await conn._execute(fn, conn._conn)  # type: ignore[no-untyped-call]
    return result


@dataclass
class _Pending:
    op: Tx[Any]
    future: asyncio.Future[Any]


class _GroupCommitWriter:
    """The only user of the writer connection: batches queued ops into one transaction."""

    def __init__(self, conn: aiosqlite.Connection, max_batch: int) -> None:
        self._conn = conn
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._drain(), name="ledger-writer")
        self._closed = False

    async def run(self, op: Tx[T]) -> T:
        if self._closed:
            raise LedgerError("The ledger is closed.")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._queue.put_nowait(_Pending(op, future))
        # Shielded: a cancelled caller does not cancel an op that may already be committing.
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Commit what is queued, then stop (also after the task was cancelled)."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)
            await asyncio.gather(self._task, return_exceptions=True)

    async def _drain(self) -> None:
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:  # close() was called: finish this batch, then stop
                    self._queue.put_nowait(None)
                    break
                batch.append(item)
            await self._commit(batch)

    async def _commit(self, batch: list[_Pending]) -> None:
        try:
            outcomes = await _on_thread(self._conn, partial(_run_batch, ops=[p.op for p in batch]))
        except asyncio.CancelledError:  # the event loop is shutting down
            for pending in batch:
                _settle(pending.future, False, LedgerError("The ledger was shut down."))
            raise
        except Exception as error:  # the transaction itself failed: nothing was committed
            for pending in batch:
                _settle(pending.future, False, LedgerBusy() if is_busy(error) else error)
            return
        for pending, (ok, value) in zip(batch, outcomes, strict=True):
            _settle(pending.future, ok, value)


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Marks the outcome as seen, so a cancelled caller's error is not logged as "never
    # retrieved" (the caller that is still waiting gets it through the shield as usual).
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # its caller was cancelled and the shield's future is gone
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


# --- the store -----------------------------------------------------------------------------


class SqliteLedger:
    """:class:`bot.core.ledger.store.Ledger` on one SQLite file (see the module docstring)."""

    def __init__(
        self,
        writer: aiosqlite.Connection,
        reader: aiosqlite.Connection,
        *,
        default_allowance: int,
        account_floor: Decimal,
        clock: Callable[[], datetime],
        max_batch: int,
    ) -> None:
        self._writer_conn = writer
        self._reader = reader
        self._writer = _GroupCommitWriter(writer, max_batch)
        self._default_allowance = default_allowance
        self._floor = account_floor
        self._clock = clock

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        default_allowance: int = 0,
        account_floor: Decimal = Decimal(0),
        synchronous: Synchronous = "FULL",
        clock: Callable[[], datetime] | None = None,
        busy_timeout: float = BUSY_TIMEOUT_S,
        max_batch: int = 128,
        migrations_dir: Path = MIGRATIONS_DIR,
        apply_migrations: bool = True,
    ) -> SqliteLedger:
        """Apply pending migrations, then open the writer and reader connections.

        ``apply_migrations=False`` (the CLI, next to a running bot) only checks that the
        database is at the code's schema version and never creates or changes the schema.
        """
        if apply_migrations:
            await asyncio.to_thread(migrate, path, migrations_dir)
        else:
            await asyncio.to_thread(check_current, path, migrations_dir)
        writer = await _connect(path, synchronous, busy_timeout)
        try:
            reader = await _connect(path, synchronous, busy_timeout)
        except BaseException:
            await writer.close()
            raise
        return cls(
            writer,
            reader,
            default_allowance=default_allowance,
            account_floor=account_floor,
            clock=clock or (lambda: datetime.now(UTC)),
            max_batch=max_batch,
        )

    async def close(self) -> None:
        try:
            await self._writer.close()
        finally:
            await self._writer_conn.close()
            await self._reader.close()

    def _rules(self) -> _Rules:
        return _Rules(self._clock(), self._default_allowance, self._floor)

    def _bind(self, fn: Callable[..., T], args: tuple[Any, ...]) -> Tx[T]:
        rules_now = self._rules()
        return lambda conn: fn(conn, rules_now, *args)

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._writer.run(self._bind(fn, args))

    async def _read(self, fn: Callable[..., T], *args: Any) -> T:
        op = self._bind(fn, args)
        try:
            return await _on_thread(self._reader, partial(_run_read, op=op))
        except sqlite3.OperationalError as error:
            if is_busy(error):
                raise LedgerBusy() from error
            raise

    # --- members ---------------------------------------------------------------------------

    async def balance(self, guild_id: int, user_id: int) -> Balance:
        return await self._read(_balance, guild_id, user_id)

    async def refill(self, guild_id: int, user_id: int, role_ids: Collection[int]) -> Balance:
        return await self._write(_tx_refill, guild_id, user_id, tuple(role_ids))

    async def hold(
        self,
        guild_id: int,
        user_id: int,
        job_key: str,
        cost: Cost,
        params: Mapping[str, Any],
        *,
        role_ids: Collection[int] | None = None,
        channel_id: int | None = None,
    ) -> HoldResult:
        """Hold ``cost`` for the job ``job_key``, or return the job already made for that key.

        ``role_ids`` are the member's roles (None: the ones last seen). Raises
        ``UserBlocked``, ``GenerationPaused``, ``AccountLow`` or ``InsufficientCredits``.
        """
        if cost.credits < 1:
            raise ValueError("a job costs at least 1 credit")
        seed = params.get("seed")
        return await self._write(
            _tx_hold,
            guild_id,
            user_id,
            job_key,
            cost,
            json.dumps(params, sort_keys=True, separators=(",", ":")),
            seed if isinstance(seed, int) else None,
            None if role_ids is None else tuple(role_ids),
            channel_id,
        )

    async def mark_running(self, job_key: str, *, balance_before: Decimal | None = None) -> bool:
        """queued → running; call it (and await it) before the request is sent upstream."""
        return await self._write(_tx_mark, job_key, JobStatus.RUNNING, balance_before)

    async def capture(
        self,
        job_key: str,
        result_path: str,
        *,
        seed: int | None = None,
        balance_after: Decimal | None = None,
    ) -> bool:
        """Charge the job (→ succeeded) once its result is stored at ``result_path``.

        True if this call captured it; False if the job was already captured or released.
        """
        if not result_path:
            raise ValueError("a captured job needs its stored result's path")
        return await self._write(
            _tx_finish, job_key, JobStatus.SUCCEEDED, result_path, seed, balance_after, None
        )

    async def release(
        self,
        job_key: str,
        reason: str,
        *,
        cancelled: bool = False,
        balance_after: Decimal | None = None,
    ) -> bool:
        """Give the held credits back (→ failed, or cancelled); True if this call did it."""
        status = JobStatus.CANCELLED if cancelled else JobStatus.FAILED
        return await self._write(_tx_finish, job_key, status, None, None, balance_after, reason)

    async def mark_delivered(self, job_key: str) -> bool:
        """succeeded → delivered, once the result was posted."""
        return await self._write(_tx_mark, job_key, JobStatus.DELIVERED, None)

    async def job(self, job_key: str) -> JobRecord | None:
        def op(conn: sqlite3.Connection, r: _Rules) -> JobRecord | None:
            row = conn.execute("SELECT * FROM jobs WHERE job_key = ?", (job_key,)).fetchone()
            return None if row is None else _job(row)

        return await self._read(op)

    async def recent_jobs(self, guild_id: int, user_id: int, limit: int = 5) -> list[JobRecord]:
        def op(conn: sqlite3.Connection, r: _Rules) -> list[JobRecord]:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE guild_id = ? AND user_id = ?"
                " ORDER BY queued_at DESC, rowid DESC LIMIT ?",
                (guild_id, user_id, limit),
            ).fetchall()
            return [_job(row) for row in rows]

        return await self._read(op)

    async def undelivered(self, limit: int = 100) -> list[JobRecord]:
        """Succeeded jobs whose result was never posted (oldest first)."""

        def op(conn: sqlite3.Connection, r: _Rules) -> list[JobRecord]:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE status = 'succeeded' ORDER BY finished_at, rowid LIMIT ?",
                (limit,),
            ).fetchall()
            return [_job(row) for row in rows]

        return await self._read(op)

    async def open_jobs(self) -> list[JobRecord]:
        def op(conn: sqlite3.Connection, r: _Rules) -> list[JobRecord]:
            rows = conn.execute(
                "SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY queued_at, rowid"
            ).fetchall()
            return [_job(row) for row in rows]

        return await self._read(op)

    async def recover(self, find_result: FindResult) -> RecoveryReport:
        """Resolve the jobs a crash left open; run at start-up before accepting jobs.

        queued → released (never sent). running → captured if ``find_result`` finds its
        stored result, else released: the upstream outcome is unknown and the member is not
        charged for it (listed in ``released_unknown`` for reconciliation).
        """
        report = RecoveryReport([], [], [], [])
        for job in await self.open_jobs():
            path = find_result(job) if job.status is JobStatus.RUNNING else None
            if path is not None:
                if await self.capture(job.job_key, path):
                    report.captured.append(job.job_key)
            elif job.status is JobStatus.QUEUED:
                if await self.release(job.job_key, "interrupted by a restart before it was sent"):
                    report.released.append(job.job_key)
            elif await self.release(job.job_key, "interrupted by a restart; outcome unknown"):
                report.released_unknown.append(job.job_key)
        report.undelivered.extend(await self.undelivered())
        return report

    # --- admins ----------------------------------------------------------------------------

    async def grant(
        self, guild_id: int, user_id: int, amount: int, *, actor: str, reason: str | None = None
    ) -> Balance:
        return await self._write(_tx_grant, guild_id, user_id, amount, actor, reason)

    async def set_balance(
        self, guild_id: int, user_id: int, amount: int, *, actor: str, reason: str | None = None
    ) -> Balance:
        return await self._write(_tx_set, guild_id, user_id, amount, actor, reason)

    async def block(
        self, guild_id: int, user_id: int, *, actor: str, reason: str | None = None
    ) -> Balance:
        return await self._write(_tx_block, guild_id, user_id, True, actor, reason)

    async def unblock(self, guild_id: int, user_id: int, *, actor: str) -> Balance:
        return await self._write(_tx_block, guild_id, user_id, False, actor, None)

    async def set_allowance(
        self, guild_id: int, amount: int, period: Period, *, actor: str
    ) -> GuildAllowance:
        return await self._write(_tx_set_allowance, guild_id, amount, period, actor)

    async def set_role_allowance(
        self, guild_id: int, role_id: int, amount: int, *, actor: str
    ) -> GuildAllowance:
        """A role's allowance per the guild's period; 0 removes it."""
        return await self._write(_tx_set_role_allowance, guild_id, role_id, amount, actor)

    async def guild_allowance(self, guild_id: int) -> GuildAllowance:
        return await self._read(_read_guild_allowance, guild_id)

    async def journal(self, guild_id: int, user_id: int, limit: int = 50) -> list[Entry]:
        """The member's latest journal entries, newest first."""

        def op(conn: sqlite3.Connection, r: _Rules) -> list[Entry]:
            rows = conn.execute(
                "SELECT * FROM entries WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?",
                (guild_id, user_id, limit),
            ).fetchall()
            return [_entry(row) for row in rows]

        return await self._read(op)

    async def usage(self, guild_id: int, days: int, limit: int = 20) -> list[UsageRow]:
        """Top users by credits spent over the last ``days`` days (today included)."""
        return await self._read(_read_usage, guild_id, days, limit)

    async def spend_per_day(self, guild_id: int, days: int) -> list[DaySpend]:
        """Credits spent per UTC day, every day of the window (zeros included), oldest first."""
        return await self._read(_read_spend_per_day, guild_id, days)

    # --- the paid account ------------------------------------------------------------------

    async def record_account_balance(
        self, remaining: Decimal, seen_at: datetime | None = None, *, successful: bool = True
    ) -> AccountState:
        return await self._write(
            _tx_record_balance, remaining, seen_at or self._clock(), successful
        )

    async def pause(self, reason: str, *, kind: PauseKind, actor: str) -> AccountState:
        return await self._write(_tx_pause, reason, kind, actor)

    async def resume(self, *, actor: str) -> AccountState:
        return await self._write(_tx_resume, actor)

    async def account_state(self) -> AccountState:
        return await self._read(_read_account_state)

    # --- operations ------------------------------------------------------------------------

    async def check_invariants(self) -> list[str]:
        return await self._read(_read_invariants)


# PRAGMAs take no parameters: one literal statement per allowed value.
_SYNCHRONOUS = {"FULL": "PRAGMA synchronous = FULL", "NORMAL": "PRAGMA synchronous = NORMAL"}


async def _connect(
    path: Path, synchronous: Synchronous, busy_timeout: float
) -> aiosqlite.Connection:
    if synchronous not in _SYNCHRONOUS:
        raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
    # isolation_level=None: no implicit deferred BEGIN; every transaction is explicit.
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
    conn.row_factory = sqlite3.Row
    try:
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute(_SYNCHRONOUS[synchronous])
        await conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        await conn.close()
        raise
    return conn
