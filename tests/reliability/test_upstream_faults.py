"""Upstream faults while jobs run, over the wire: the member gets a plain message, nothing is
charged, nothing that may have been billed is retried blindly, and pauses come and go."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bot.core.ledger import JobStatus, PauseKind
from tests.harness import World, png
from tests.standins.fake_segmind import (
    CreditsHeader,
    Delay,
    Drop,
    Garbage,
    Hang,
    RateLimited,
    Redirect,
    Respond,
    Truncated,
)


@pytest.fixture
def extra_settings() -> dict[str, str]:
    return {"SDBOT_UPSTREAM_TIMEOUT": "1.5"}


async def run_one(world: World, prompt: str = "a cat"):  # type: ignore[no-untyped-def]
    return await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt=prompt
    )


@pytest.mark.parametrize(
    ("fault", "message", "retry_button", "requests"),
    [
        (Respond(500, {"error": "internal"}), "press Retry", True, 1),
        (Respond(502, "<html>bad gateway</html>"), "press Retry", True, 1),
        (Respond(422, {"error": "prompt is invalid"}), "rejected these settings", False, 1),
        (Hang(), "took too long", True, 1),
        (Drop(), "press Retry", True, 1),
        (Drop(after_billing=True), "press Retry", True, 1),
        (Garbage(), "broken image", True, 1),
        (Truncated(), "broken image", True, 1),
    ],
    ids=["500", "502-html", "422", "hang", "drop", "drop-after-billing", "garbage", "truncated"],
)
async def test_a_failed_call_releases_and_is_never_retried_blindly(
    world: World, fault: object, message: str, retry_button: bool, requests: int
) -> None:
    world.segmind.inject(fault)  # type: ignore[arg-type]
    it = await run_one(world)
    await world.ephemeral_text(it, message)
    await world.until_status(it, JobStatus.FAILED)
    assert await world.balance(world.alice) == (100, 0, 0)
    assert len(world.segmind.requests) == requests
    assert it.original is not None
    assert (f"sdbot:retry:{it.id}" in it.original.custom_ids) is retry_button
    assert world.results() == []


@pytest.mark.parametrize(
    ("status", "paused_text"),
    [
        (401, "misconfigured"),
        (404, "misconfigured"),
        (405, "misconfigured"),
        (406, "out of credits"),
    ],
)
async def test_misconfiguration_and_no_credits_pause_generation(
    world: World, status: int, paused_text: str
) -> None:
    body: object = "<html>Method Not Allowed</html>" if status == 405 else {"error": "no"}
    world.segmind.inject(Respond(status, body))  # type: ignore[arg-type]
    it = await run_one(world)
    await world.ephemeral_text(it, paused_text)
    notice = await world.discord.wait_until(lambda: world.log_channel.messages)
    assert "paused" in notice[0].content
    state = await world.bot.ledger.account_state()
    assert state.paused
    refused = await run_one(world)
    await world.ephemeral_text(refused, "paused")
    assert len(world.segmind.requests) == 1
    assert await world.balance(world.alice) == (100, 0, 0)


async def test_out_of_credits_pause_lifts_on_a_later_good_reading(world: World) -> None:
    await world.bot.ledger.pause("test", kind=PauseKind.OUT_OF_CREDITS, actor="test")
    await world.bot.ledger.record_account_balance(Decimal(50))
    assert not (await world.bot.ledger.account_state()).paused
    it = await run_one(world)
    await world.result_for(it)


async def test_rate_limit_waits_and_retries_once_without_charging_twice(world: World) -> None:
    world.segmind.inject(RateLimited())
    it = await run_one(world)
    await world.result_for(it, within=30)
    assert [r.status for r in world.segmind.requests] == [429, 200]
    assert world.segmind.billed == 1
    await world.until_status(it, JobStatus.DELIVERED)
    assert await world.balance(world.alice) == (94, 0, 6)


async def test_a_redirect_is_not_followed_and_the_key_stays_home(world: World) -> None:
    world.segmind.inject(Redirect())
    it = await run_one(world)
    await world.ephemeral_text(it, "misconfigured")
    assert not world.segmind.key_leaked
    assert world.segmind.redirect_hits == []


@pytest.mark.parametrize(
    "header", [None, "lots", "12,5", "NaN", ""], ids=["missing", "word", "comma", "nan", "empty"]
)
async def test_a_missing_or_malformed_balance_header_changes_nothing(
    world: World, header: str | None
) -> None:
    await world.bot.ledger.record_account_balance(Decimal(77))
    world.segmind.inject(CreditsHeader(header))
    it = await run_one(world)
    await world.result_for(it)
    await world.until_status(it, JobStatus.DELIVERED)
    state = await world.bot.ledger.account_state()
    assert state.remaining == Decimal(77) and not state.paused
    assert await world.balance(world.alice) == (94, 0, 6)


async def test_a_slow_answer_within_the_timeout_succeeds(world: World) -> None:
    world.segmind.inject(Delay(1.0))
    it = await run_one(world)
    await world.result_for(it)
    assert await world.balance(world.alice) == (94, 0, 6)
