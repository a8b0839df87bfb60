"""A concurrency scenario and its checker, shared by the real store and the negative control.

Many tasks race on a few members with a small balance: pairs of tasks deliver the same job key
(a duplicated interaction), and every job is then captured and released at the same time by
both of its tasks. The checker looks only at what the callers observed and at the final
balances, so it judges any store with this small interface.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from bot.core.errors import InsufficientCredits
from bot.core.pricing import Cost

GUILD = 7


class Created(Protocol):
    @property
    def created(self) -> bool: ...


class Amounts(Protocol):
    @property
    def available(self) -> int: ...
    @property
    def held(self) -> int: ...
    @property
    def spent(self) -> int: ...


class RaceStore(Protocol):
    async def grant(
        self, guild_id: int, user_id: int, amount: int, *, actor: str, reason: str | None = None
    ) -> object: ...
    async def hold(
        self, guild_id: int, user_id: int, job_key: str, cost: Cost, params: dict[str, object]
    ) -> Created: ...
    async def capture(self, job_key: str, result_path: str) -> bool: ...
    async def release(self, job_key: str, reason: str) -> bool: ...
    async def balance(self, guild_id: int, user_id: int) -> Amounts: ...


@dataclass
class Race:
    users: tuple[int, ...]
    granted: int
    credits: int
    created: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused: int = 0
    captured: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    released: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    held_keys: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    balances: dict[int, tuple[int, int, int]] = field(default_factory=dict)


async def run_race(
    stores: list[RaceStore],
    *,
    seed: int,
    users: tuple[int, ...] = (1, 2, 3),
    tasks_per_user: int = 40,
    granted: int = 20,
    credits: int = 3,
) -> Race:
    """``len(users) × tasks_per_user`` tasks at once, spread over ``stores`` (same database)."""
    rng = random.Random(seed)
    race = Race(users, granted, credits)
    for user in users:
        await stores[0].grant(GUILD, user, granted, actor="test")
    cost = Cost(credits, Decimal("0.001"))

    async def member(
        store: RaceStore, user: int, key: str, delay: float, capture_first: bool
    ) -> None:
        await asyncio.sleep(delay)
        try:
            result = await store.hold(GUILD, user, key, cost, {"n": key})
        except InsufficientCredits:
            race.refused += 1
            return
        except Exception as error:
            race.errors.append(f"hold {key}: {error!r}")
            return
        race.held_keys.add(key)
        if result.created:
            race.created[key] += 1
        finalize = [store.capture(key, f"/r/{key}.png"), store.release(key, "raced")]
        if not capture_first:
            finalize.reverse()
        outcomes = await asyncio.gather(*finalize, return_exceptions=True)
        captured, released = outcomes if capture_first else outcomes[::-1]
        for kind, outcome, tally in (
            ("capture", captured, race.captured),
            ("release", released, race.released),
        ):
            if isinstance(outcome, BaseException):
                race.errors.append(f"{kind} {key}: {outcome!r}")
            elif outcome:
                tally[key] += 1

    tasks = []
    for user in users:
        for n in range(tasks_per_user):
            key = f"{user}-{n // 2}"  # two deliveries of every interaction
            store = stores[rng.randrange(len(stores))]
            tasks.append(member(store, user, key, rng.random() / 500, rng.random() < 0.5))
    rng.shuffle(tasks)
    await asyncio.gather(*tasks)
    for user in users:
        b = await stores[0].balance(GUILD, user)
        race.balances[user] = (b.available, b.held, b.spent)
    return race


def violations(race: Race) -> list[str]:
    """Everything the observations prove wrong; empty for a correct store."""
    found = list(race.errors)
    for key in sorted(race.held_keys):
        if race.created[key] > 1:
            found.append(f"job {key} was held {race.created[key]} times")
        finals = race.captured[key] + race.released[key]
        if finals != 1:
            found.append(f"job {key} was finalized {finals} times")
    for user in race.users:
        available, held, spent = race.balances[user]
        captured = sum(n for key, n in race.captured.items() if key.startswith(f"{user}-"))
        charged = captured * race.credits
        if charged > race.granted:
            found.append(f"user {user} overspent: {charged} charged of {race.granted} granted")
        if available < 0 or held < 0:
            found.append(f"user {user} has a negative balance: {available=} {held=}")
        if available + held + spent != race.granted:
            found.append(
                f"user {user}: available+held+spent = {available + held + spent}"
                f" != granted {race.granted}"
            )
        if spent != charged:
            found.append(f"user {user}: spent {spent} != {charged} charged by captures")
        if held:
            found.append(f"user {user}: {held} still held after every job finished")
    return found
