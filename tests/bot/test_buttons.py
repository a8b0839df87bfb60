"""Result buttons and the message context menus, over the wire."""

from __future__ import annotations

import asyncio
import io

from PIL import Image

from bot.core.ledger import JobStatus
from tests.harness import World, png
from tests.standins.fake_discord import MANAGE_MESSAGES


async def first_result(world: World):  # type: ignore[no-untyped-def]
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat", seed=7
    )
    message = await world.result_for(it)
    await world.until_status(it, JobStatus.DELIVERED)
    return it, message


async def test_reroll_uses_the_same_settings_and_a_new_seed(world: World) -> None:
    it, message = await first_result(world)
    again = await world.discord.click(world.bob, message, f"sdbot:reroll:{it.id}")
    second = await world.result_for(again)
    first_body, second_body = (r.body for r in world.segmind.requests)
    assert second_body["prompt"] == first_body["prompt"]
    assert second_body["seed"] != first_body["seed"]
    assert second.attachments
    await world.until_status(again, JobStatus.DELIVERED)
    assert await world.balance(world.bob) == (94, 0, 6)  # whoever clicks pays
    assert await world.balance(world.alice) == (94, 0, 6)


async def test_vary_and_zoom_out_work_on_the_result(world: World) -> None:
    it, message = await first_result(world)
    vary = await world.discord.click(world.alice, message, f"sdbot:vary:{it.id}")
    await world.result_for(vary)
    zoom = await world.discord.click(world.alice, message, f"sdbot:zoom:{it.id}")
    zoomed = await world.result_for(zoom)
    paths = [r.path for r in world.segmind.requests]
    assert paths == ["/v1/sd1.5-img2img", "/v1/sd1.5-img2img", "/v1/sd1.5-outpaint"]
    with Image.open(io.BytesIO(zoomed.attachments[0].data)) as im:
        assert im.size == (1024, 768)  # the 768×512 result, zoomed out on a landscape canvas


async def test_delete_only_by_the_requester_or_a_moderator(world: World) -> None:
    it, message = await first_result(world)
    refused = await world.discord.click(world.bob, message, f"sdbot:delete:{it.id}")
    await world.discord.wait_until(lambda: refused.original)
    assert refused.original is not None and refused.original.ephemeral
    assert "Manage Messages" in refused.original.embeds[0]["description"]
    assert not message.deleted
    moderator = world.guild.add_member("mod", permissions=MANAGE_MESSAGES)
    await world.discord.click(moderator, message, f"sdbot:delete:{it.id}")
    await world.discord.wait_until(lambda: message.deleted)


async def test_requester_can_delete(world: World) -> None:
    it, message = await first_result(world)
    await world.discord.click(world.alice, message, f"sdbot:delete:{it.id}")
    await world.discord.wait_until(lambda: message.deleted)


async def test_context_menu_opens_a_modal_and_runs_the_job(world: World) -> None:
    posted = await world.discord.post_message(
        world.bob, world.channel, "look", files=[("photo.png", png((600, 600)))]
    )
    opened = await world.discord.message_command(world.alice, posted, "Outpaint")
    modal = await world.discord.wait_until(lambda: opened.modal)
    ids = [c["components"][0]["custom_id"] for c in modal["components"]]
    submitted = await world.discord.submit_modal(
        world.alice, opened, {ids[0]: "a wide beach", ids[1]: ""}
    )
    result = await world.result_for(submitted)
    assert world.segmind.requests[0].path == "/v1/sd1.5-outpaint"
    assert world.segmind.requests[0].body["prompt"] == "a wide beach"
    assert result.attachments


async def test_context_menu_on_a_message_without_an_image(world: World) -> None:
    posted = await world.discord.post_message(world.bob, world.channel, "just text")
    it = await world.discord.message_command(world.alice, posted, "Img2img")
    await world.ephemeral_text(it, "no image")
    assert it.modal is None and world.segmind.requests == []


async def test_cancel_while_queued_releases_the_hold(world: World) -> None:
    from tests.standins.fake_segmind import Delay

    world.segmind.mode = Delay(3.0)  # the first job runs while the second is cancelled
    first = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("a.png", png()), prompt="one"
    )
    await world.discord.wait_until(lambda: world.segmind.requests)  # the first one is running
    second = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("b.png", png()), prompt="two"
    )
    await world.ephemeral_text(second, "position 1")
    assert second.original is not None
    cancel = await world.discord.click(world.alice, second.original, f"sdbot:cancel:{second.id}")
    await world.discord.wait_until(lambda: cancel.acknowledged)
    await world.until_status(second, JobStatus.CANCELLED)
    await world.until_status(first, JobStatus.DELIVERED)
    await asyncio.sleep(1.5)  # a queue refresh would have happened by now
    assert second.original is not None and "Cancelled" in second.original.content
    assert await world.balance(world.alice) == (94, 0, 6)
    assert len(world.segmind.requests) == 1
