"""Discord faults while a result is being posted, over the wire: the result is still delivered
(or kept and retrievable) and nobody is charged twice."""

from __future__ import annotations

import pytest

from bot.core.ledger import JobStatus
from tests.harness import World, png
from tests.standins.fake_segmind import Delay

FOLLOW_UP = "/webhooks/{webhook_id}/{webhook_token}"
CHANNEL_POST = "/channels/{channel_id}/messages"


async def start(world: World):  # type: ignore[no-untyped-def]
    return await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )


async def delivered_once(world: World, it) -> None:  # type: ignore[no-untyped-def]
    await world.result_for(it, within=20)
    await world.until_status(it, JobStatus.DELIVERED, within=20)
    assert len(world.results()) == 1
    assert world.segmind.billed == 1
    assert await world.balance(world.alice) == (94, 0, 6)


@pytest.mark.parametrize(
    ("status", "code"), [(404, 10062), (401, 50027), (404, 10015), (403, 50013)]
)
async def test_a_dead_follow_up_falls_back_to_the_channel(
    world: World, status: int, code: int
) -> None:
    world.discord.fail("POST", FOLLOW_UP, status=status, code=code)
    it = await start(world)
    await delivered_once(world, it)
    assert world.results()[0].interaction is None  # posted as a channel message


async def test_too_large_is_re_encoded_smaller(world: World) -> None:
    world.discord.fail("POST", FOLLOW_UP, status=413, code=40005)
    it = await start(world)
    await delivered_once(world, it)
    assert world.results()[0].attachments[0].filename.endswith(".jpg")


async def test_rate_limited_post_waits_and_posts_once(world: World) -> None:
    world.discord.fail("POST", FOLLOW_UP, status=429, retry_after=0.5)
    it = await start(world)
    await delivered_once(world, it)


async def test_server_error_is_retried_by_discord_py_without_duplicates(world: World) -> None:
    world.discord.fail("POST", FOLLOW_UP, status=500, times=1)
    it = await start(world)
    await delivered_once(world, it)


async def test_every_route_failing_keeps_the_result_retrievable(world: World) -> None:
    world.discord.fail("POST", FOLLOW_UP, status=403, code=50013, times=5)
    world.discord.fail("POST", CHANNEL_POST, status=403, code=50013, times=5)
    it = await start(world)
    await world.until_status(it, JobStatus.SUCCEEDED)
    assert world.results() == []
    assert world.bot.store.has_result(str(it.id))
    assert [j.job_key for j in await world.bot.ledger.undelivered()] == [str(it.id)]
    assert await world.balance(world.alice) == (94, 0, 6)


@pytest.mark.parametrize("resumable", [True, False], ids=["resume", "reidentify"])
async def test_gateway_drop_mid_job(world: World, resumable: bool) -> None:
    world.segmind.mode = Delay(0.5)
    it = await start(world)
    await world.discord.wait_until(lambda: world.segmind.requests)
    await world.discord.drop_gateway(resumable=resumable)
    await delivered_once(world, it)
    # The bot still answers commands afterwards.
    await world.discord.wait_until(lambda: world.discord.connected, within=15)
    again = await world.discord.slash(world.bob, world.channel, "credits")
    await world.ephemeral_text(again, "Your credits", within=15)
