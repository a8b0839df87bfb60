"""``sdbot quota show | grant | set | report``: credit admin from the shell.

Safe while the bot runs: each command is one short transaction on the same SQLite file (WAL
and a busy timeout), and it never migrates the schema (that is ``sdbot migrate``'s job).
Changes are journalled with the actor ``cli:<OS user>``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any, TypeVar

from bot.config import load_settings
from bot.core.ledger.sqlite import SqliteLedger
from bot.core.ledger.store import Balance, DaySpend, Ledger, UsageRow

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    quota = subparsers.add_parser(
        "quota",
        help="show, grant, set and report members' credits",
        description="Credit admin from the shell; safe to run while the bot runs.",
    )
    commands = quota.add_subparsers(dest="quota_command", metavar="ACTION", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--guild", type=int, required=True, help="the server (guild) id")
    common.add_argument("--json", action="store_true", help="print one JSON object")
    member = argparse.ArgumentParser(add_help=False, parents=[common])
    member.add_argument("--user", type=int, required=True, help="the member's user id")
    change = argparse.ArgumentParser(add_help=False, parents=[member])
    change.add_argument("--reason", help="recorded in the journal")

    show = commands.add_parser("show", parents=[member], help="a member's balance")
    show.set_defaults(func=_show)
    grant = commands.add_parser(
        "grant", parents=[change], help="add extra credits (a negative amount takes some back)"
    )
    grant.add_argument("amount", type=int)
    grant.set_defaults(func=_grant)
    set_ = commands.add_parser("set", parents=[change], help="set a member's available credits")
    set_.add_argument("amount", type=int)
    set_.set_defaults(func=_set)
    report = commands.add_parser("report", parents=[common], help="usage: top users, per day")
    report.add_argument("--days", type=int, default=7, help="the window, today included (7)")
    report.add_argument("--limit", type=int, default=10, help="how many top users (10)")
    report.set_defaults(func=_report)


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        return "cli:unknown"


def _with_ledger(action: Callable[[Ledger], Awaitable[T]]) -> T:
    async def run() -> T:
        settings = load_settings()
        ledger = await SqliteLedger.open(
            settings.sqlite_path,
            default_allowance=settings.default_allowance,
            account_floor=settings.account_floor,
            apply_migrations=False,
        )
        try:
            return await action(ledger)
        finally:
            await ledger.close()

    return asyncio.run(run())


def _print_balance(balance: Balance, as_json: bool) -> int:
    if as_json:
        print(json.dumps(balance.to_dict()))
        return 0
    refill = (
        f"{balance.allowance} per {balance.period.value}, next refill "
        f"{balance.next_refill:%Y-%m-%d %H:%M} UTC"
        if balance.next_refill
        else "none (no automatic refill)"
    )
    blocked = f"yes ({balance.blocked_reason or 'no reason given'})" if balance.blocked else "no"
    print(f"guild {balance.guild_id}, user {balance.user_id}")
    print(f"  available  {balance.available}  (of which {balance.extra} extra)")
    print(f"  held       {balance.held}")
    print(f"  spent      {balance.spent}")
    print(f"  allowance  {refill}")
    print(f"  blocked    {blocked}")
    return 0


def _show(args: argparse.Namespace) -> int:
    balance = _with_ledger(lambda ledger: ledger.balance(args.guild, args.user))
    return _print_balance(balance, args.json)


def _grant(args: argparse.Namespace) -> int:
    balance = _with_ledger(
        lambda ledger: ledger.grant(
            args.guild, args.user, args.amount, actor=_actor(), reason=args.reason
        )
    )
    return _print_balance(balance, args.json)


def _set(args: argparse.Namespace) -> int:
    balance = _with_ledger(
        lambda ledger: ledger.set_balance(
            args.guild, args.user, args.amount, actor=_actor(), reason=args.reason
        )
    )
    return _print_balance(balance, args.json)


def _report(args: argparse.Namespace) -> int:
    async def read(ledger: Ledger) -> tuple[list[UsageRow], list[DaySpend]]:
        return (
            await ledger.usage(args.guild, args.days, args.limit),
            await ledger.spend_per_day(args.guild, args.days),
        )

    users, days = _with_ledger(read)
    if args.json:
        print(
            json.dumps(
                {
                    "guild_id": args.guild,
                    "days": args.days,
                    "top_users": [asdict(row) for row in users],
                    "per_day": [
                        {"day": d.day.isoformat(), "jobs": d.jobs, "credits": d.credits}
                        for d in days
                    ],
                }
            )
        )
        return 0
    print(f"guild {args.guild}, last {args.days} days (UTC)")
    print(f"  {'user':>20}  {'jobs':>5}  {'ok':>5}  {'failed':>6}  {'credits':>8}")
    for row in users:
        print(
            f"  {row.user_id:>20}  {row.jobs:>5}  {row.succeeded:>5}  {row.failed:>6}"
            f"  {row.credits_spent:>8}"
        )
    if not users:
        print("  (no finished jobs)")
    print("  per day:")
    for d in days:
        print(f"  {d.day.isoformat()}  {d.jobs:>5} jobs  {d.credits:>8} credits")
    return 0
