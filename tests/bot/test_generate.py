"""/img2img and /outpaint over the wire, from the member's side."""

from __future__ import annotations

import io

from PIL import Image

from bot.core.ledger import JobStatus
from tests.harness import World, png
from tests.standins.fake_segmind import Respond


async def test_img2img_posts_the_result_and_charges_once(world: World) -> None:
    it = await world.discord.slash(
        world.alice,
        world.channel,
        "img2img",
        image=("cat.png", png()),
        prompt="a blue cat",
        seed=42,
    )
    result = await world.result_for(it)
    assert it.ack_latency is not None and it.ack_latency < 3
    assert it.original is not None and it.original.ephemeral  # the queue message is private
    [attachment] = result.attachments
    with Image.open(io.BytesIO(attachment.data)) as im:
        assert im.size == (768, 512)  # 640×480 is closest to 768×512
    embed = result.embeds[0]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Seed"] == "42" and fields["Cost"] == "6 credits"
    assert fields["Their balance"] == "94 credits"
    assert set(c.split(":")[1] for c in result.custom_ids) == {"reroll", "vary", "zoom", "delete"}
    assert not world.discord.pings(result)
    await world.until_status(it, JobStatus.DELIVERED)
    assert await world.balance(world.alice) == (94, 0, 6)
    assert world.segmind.billed == 1
    [request] = world.segmind.requests
    assert request.body["prompt"] == "a blue cat" and request.body["seed"] == 42


async def test_outpaint_extends_the_image(world: World) -> None:
    it = await world.discord.slash(
        world.alice,
        world.channel,
        "outpaint",
        image=("street.png", png((800, 800))),
        prompt="a market",
        direction="right",
    )
    result = await world.result_for(it)
    with Image.open(io.BytesIO(result.attachments[0].data)) as im:
        assert im.size == (1024, 768)
    body = world.segmind.requests[0].body
    assert (body["img_width"], body["img_height"], body["offset_x"]) == (1024, 768, 0)
    assert await world.balance(world.alice) == (92, 0, 8)


async def test_bad_image_is_refused_and_costs_nothing(world: World) -> None:
    it = await world.discord.slash(
        world.alice,
        world.channel,
        "img2img",
        image=("notes.png", b"not an image at all"),
        prompt="x",
    )
    text = await world.ephemeral_text(it, "not a PNG")
    assert "JPEG" in text
    assert world.segmind.requests == []
    assert await world.balance(world.alice) == (100, 0, 0)
    assert world.results() == []


async def test_upstream_failure_releases_and_offers_retry(world: World) -> None:
    world.segmind.inject(Respond(500, {"error": "GPU fell over"}))
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.ephemeral_text(it, "press Retry")
    assert await world.balance(world.alice) == (100, 0, 0)
    assert len(world.segmind.requests) == 1  # never retried by itself
    retry_id = f"sdbot:retry:{it.id}"
    assert it.original is not None and retry_id in it.original.custom_ids
    again = await world.discord.click(world.alice, it.original, retry_id)
    result = await world.result_for(again)
    assert result.attachments
    assert world.segmind.requests[1].body["seed"] == world.segmind.requests[0].body["seed"]
    await world.until_status(again, JobStatus.DELIVERED)
    assert await world.balance(world.alice) == (94, 0, 6)


async def test_same_interaction_delivered_twice_makes_one_job(world: World) -> None:
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.discord.redeliver(it)
    await world.result_for(it)
    await world.until_status(it, JobStatus.DELIVERED)
    assert world.segmind.billed == 1
    assert await world.balance(world.alice) == (94, 0, 6)
    assert len(world.results()) == 1


async def test_no_credits_is_refused_and_nothing_is_sent(world: World) -> None:
    await world.bot.ledger.set_balance(world.gid, world.bob.user.id, 3, actor="test")
    it = await world.discord.slash(
        world.bob, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    text = await world.ephemeral_text(it, "costs 6 credits but you have 3")
    assert "/credits" in text
    assert world.segmind.requests == []
    assert await world.balance(world.bob) == (3, 0, 0)


async def test_out_of_range_options_sent_raw_are_refused_by_the_bot(world: World) -> None:
    it = await world.discord.slash(
        world.alice,
        world.channel,
        "img2img",
        raw=True,
        image=("cat.png", png()),
        prompt="x",
        steps=5,
    )
    await world.ephemeral_text(it, "`steps` = 5 is not allowed")
    assert world.segmind.requests == []
