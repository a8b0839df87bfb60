"""Results are never lost: expired tokens, Discord errors and a restart mid-job."""

from __future__ import annotations

import asyncio

from bot.core.ledger import JobStatus
from tests.harness import World, png, running_bot
from tests.standins.fake_segmind import Delay

WEBHOOK = "/webhooks/{webhook_id}/{webhook_token}"
CHANNEL_MESSAGES = "/channels/{channel_id}/messages"


async def test_result_goes_to_the_channel_when_the_token_has_expired(world: World) -> None:
    world.segmind.mode = Delay(0.5)
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.ephemeral_text(it, "costs")
    world.discord.advance_time(16 * 60)  # the interaction token is dead (401 50027)
    result = await world.result_for(it)
    assert result.interaction is None  # a plain channel message, not a follow-up
    assert f"<@{world.alice.user.id}>" in result.embeds[0]["description"]
    await world.until_status(it, JobStatus.DELIVERED)
    assert await world.balance(world.alice) == (94, 0, 6)


async def test_a_failed_post_is_kept_and_offered_in_credits(world: World) -> None:
    world.discord.fail("POST", WEBHOOK, status=404, code=10015, times=10)
    world.discord.fail("POST", CHANNEL_MESSAGES, status=403, code=50013, times=10)
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.until_status(it, JobStatus.SUCCEEDED)
    await world.ephemeral_text(it, "could not be posted yet")
    assert world.results() == []
    assert await world.balance(world.alice) == (94, 0, 6)  # the image exists: it is paid for
    credits = await world.discord.slash(world.alice, world.channel, "credits")
    await world.ephemeral_text(credits, "Your credits")
    assert credits.original is not None
    [image] = credits.original.attachments
    assert image.data.startswith(b"\xff\xd8")
    await world.until_status(it, JobStatus.DELIVERED)


async def test_thirty_commands_from_ten_members_at_once(world: World) -> None:
    members = [world.guild.add_member(f"m{n}") for n in range(10)]
    for member in members:
        await world.bot.ledger.grant(world.gid, member.user.id, 50, actor="test")
    image = png()
    sends = [
        world.discord.slash(m, world.channel, "img2img", image=("a.png", image), prompt=f"job {i}")
        for i in range(3)
        for m in members
    ]
    interactions = await asyncio.gather(*sends)
    await world.discord.wait_until(lambda: all(i.acknowledged for i in interactions), within=10)
    assert max(i.ack_latency or 99 for i in interactions) < 3
    for it in interactions:
        await world.until_status(it, JobStatus.DELIVERED, within=60)
    for member in members:
        assert await world.balance(member) == (32, 0, 18)
    assert world.segmind.billed == 30
    assert len(world.results()) == 30


async def test_restart_with_jobs_in_flight_loses_nothing(world: World) -> None:
    world.segmind.mode = Delay(4.0)  # longer than the 2 s shutdown grace
    first = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("a.png", png()), prompt="x"
    )
    await world.discord.wait_until(lambda: world.segmind.requests)
    jobs = [first] + [
        await world.discord.slash(m, world.channel, "img2img", image=("a.png", png()), prompt="x")
        for m in (world.alice, world.bob)
    ]
    await world.discord.wait_until(lambda: len(world.segmind.requests) == 2)
    await world.ephemeral_text(jobs[1], "position 1")  # Alice's second job waits its turn
    await world.bot.shutdown()  # what SIGTERM does
    world.segmind.mode = None
    async with running_bot(world.settings, world.discord) as bot:
        statuses = [(await bot.ledger.job(str(it.id))).status for it in jobs]  # type: ignore[union-attr]
        # Alice's second job never left the queue; the two running ones were cut off by the
        # restart with their outcome unknown: all three are released, nobody pays.
        assert statuses == [JobStatus.FAILED] * 3
        for member in (world.alice, world.bob):
            balance = await bot.ledger.balance(world.gid, member.user.id)
            assert (balance.available, balance.held, balance.spent) == (100, 0, 0)
        again = await world.discord.slash(
            world.alice, world.channel, "img2img", image=("a.png", png()), prompt="after"
        )
        await world.result_for(again)


async def test_buttons_keep_working_after_a_restart(world: World) -> None:
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    message = await world.result_for(it)
    await world.until_status(it, JobStatus.DELIVERED)
    await world.bot.shutdown()
    async with running_bot(world.settings, world.discord):
        again = await world.discord.click(world.bob, message, f"sdbot:reroll:{it.id}")
        rerolled = await world.result_for(again)
        assert rerolled.attachments
        assert world.segmind.requests[1].body["prompt"] == "a cat"
