"""/credits and the /quota admin group, over the wire: admins can, members cannot."""

from __future__ import annotations

import pytest

from bot.core.ledger import JobStatus
from tests.harness import World, png
from tests.standins.fake_discord import MANAGE_GUILD, CommandRefused
from tests.standins.fake_segmind import Respond

ADMIN_COMMANDS = {
    "quota show": {"user": "bob"},
    "quota grant": {"user": "bob", "amount": 5},
    "quota set": {"user": "bob", "amount": 5},
    "quota allowance": {"amount": 5, "period": "day"},
    "quota block": {"user": "bob"},
    "quota unblock": {"user": "bob"},
    "quota report": {},
    "quota account": {},
    "quota resume": {},
}


def options(world: World, raw: dict[str, object]) -> dict[str, object]:
    return {k: getattr(world, v) if v == "bob" else v for k, v in raw.items()}


async def test_credits_shows_balance_and_last_jobs(world: World) -> None:
    job = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.until_status(job, JobStatus.DELIVERED)
    it = await world.discord.slash(world.alice, world.channel, "credits")
    text = await world.ephemeral_text(it, "Your credits")
    assert it.original is not None and it.original.ephemeral
    fields = {f["name"]: f["value"] for f in it.original.embeds[0]["fields"]}
    assert (fields["Available"], fields["Held by queued jobs"], fields["Spent"]) == ("94", "0", "6")
    assert "img2img" in fields["Last jobs"] and "delivered" in fields["Last jobs"]
    assert text


@pytest.mark.parametrize("command", sorted(ADMIN_COMMANDS))
async def test_every_admin_command_is_refused_to_a_member(world: World, command: str) -> None:
    with pytest.raises(CommandRefused):
        await world.discord.slash(
            world.alice, world.channel, command, **options(world, ADMIN_COMMANDS[command])
        )
    # A client that sends it anyway (or a server that re-enabled the command for everyone).
    it = await world.discord.slash(
        world.alice, world.channel, command, raw=True, **options(world, ADMIN_COMMANDS[command])
    )
    await world.ephemeral_text(it, "Manage Server")
    assert await world.balance(world.bob) == (100, 0, 0)


async def test_an_admin_who_lost_the_permission_is_refused(world: World) -> None:
    role = world.guild.add_role("mods", permissions=MANAGE_GUILD)
    mod = world.guild.add_member("mod", roles=[role])
    it = await world.discord.slash(mod, world.channel, "quota grant", user=world.bob, amount=1)
    await world.ephemeral_text(it, "Granted 1")
    world.discord.remove_role(mod, role)
    again = await world.discord.slash(
        mod, world.channel, "quota grant", raw=True, user=world.bob, amount=1
    )
    await world.ephemeral_text(again, "Manage Server")
    assert await world.balance(world.bob) == (101, 0, 0)


async def test_grant_set_block_and_unblock(world: World) -> None:
    d, admin, bob = world.discord, world.admin, world.bob
    await world.ephemeral_text(
        await d.slash(admin, world.channel, "quota grant", user=bob, amount=25, reason="prize"),
        "125 available",
    )
    await world.ephemeral_text(
        await d.slash(admin, world.channel, "quota set", user=bob, amount=10), "10 credits"
    )
    assert await world.balance(bob) == (10, 0, 0)
    await world.ephemeral_text(
        await d.slash(admin, world.channel, "quota block", user=bob, reason="spam"), "blocked"
    )
    refused = await d.slash(bob, world.channel, "img2img", image=("a.png", png()), prompt="x")
    await world.ephemeral_text(refused, "blocked")
    assert world.segmind.requests == []
    await world.ephemeral_text(
        await d.slash(admin, world.channel, "quota unblock", user=bob), "again"
    )
    entries = await world.bot.ledger.journal(world.gid, bob.user.id)
    assert any(e.reason == "prize" and e.actor == f"discord:{admin.user.id}" for e in entries)


async def test_allowance_and_role_allowance(world: World) -> None:
    d, admin = world.discord, world.admin
    artists = world.guild.add_role("artists")
    carol = world.guild.add_member("carol", roles=[artists])
    await world.ephemeral_text(
        await d.slash(admin, world.channel, "quota allowance", amount=10, period="day"),
        "10 credits",
    )
    await world.ephemeral_text(
        await d.slash(admin, world.channel, "quota role", role=artists, amount=30), "at least 30"
    )
    it = await d.slash(carol, world.channel, "credits")
    await world.ephemeral_text(it, "Your credits")
    assert it.original is not None
    fields = {f["name"]: f["value"] for f in it.original.embeds[0]["fields"]}
    assert fields["Available"] == "30" and fields["Allowance"].startswith("30 per day")


async def test_report_attaches_a_chart(world: World) -> None:
    job = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.until_status(job, JobStatus.DELIVERED)
    it = await world.discord.slash(world.admin, world.channel, "quota report", days=3)
    await world.ephemeral_text(it, "Usage, last 3 days")
    assert it.original is not None
    [chart] = it.original.attachments
    assert chart.data.startswith(b"\x89PNG")
    assert f"<@{world.alice.user.id}>: 6 credits" in it.original.embeds[0]["description"]


async def test_a_406_pauses_tells_admins_and_resumes(world: World) -> None:
    world.segmind.inject(Respond(406, {"error": "Not enough credits"}))
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.ephemeral_text(it, "out of credits")
    notice = await world.discord.wait_until(lambda: world.log_channel.messages)
    assert "paused" in notice[0].content and not world.discord.pings(notice[0])
    blocked = await world.discord.slash(
        world.bob, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.ephemeral_text(blocked, "paused")
    account = await world.discord.slash(world.admin, world.channel, "quota account")
    await world.ephemeral_text(account, "Image account")
    assert account.original is not None
    assert "PAUSED" in str(account.original.embeds[0]["fields"])
    await world.ephemeral_text(
        await world.discord.slash(world.admin, world.channel, "quota resume"), "resumed"
    )
    after = await world.discord.slash(
        world.bob, world.channel, "img2img", image=("cat.png", png()), prompt="a cat"
    )
    await world.result_for(after)
    assert await world.balance(world.alice) == (100, 0, 0)


async def test_mentions_in_a_prompt_never_ping(world: World) -> None:
    role = world.guild.add_role("everyone-role", mentionable=True)
    prompt = f"@everyone @here <@{world.bob.user.id}> <@&{role.id}> a cat"
    it = await world.discord.slash(
        world.alice, world.channel, "img2img", image=("cat.png", png()), prompt=prompt
    )
    result = await world.result_for(it)
    assert not world.discord.pings(result)
    assert result.allowed_mentions is not None and result.allowed_mentions.get("parse") == []
    for message in world.channel.messages:
        assert not world.discord.pings(message)
