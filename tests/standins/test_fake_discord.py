"""The Discord stand-in, driven by a minimal real discord.py bot over loopback sockets."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands
from PIL import Image, ImageOps

from tests.standins.fake_discord import (
    ALL_PERMISSIONS,
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    MANAGE_GUILD,
    MANAGE_MESSAGES,
    MIB,
    REDACTED,
    SEND_MESSAGES,
    VIEW_CHANNEL,
    Channel,
    CommandRefused,
    FakeDiscord,
    Guild,
    Member,
    Pings,
    RequestRecord,
    Upload,
)
from tests.standins.openapi_check import assert_records_match_spec, load_spec

CALLBACK = "/interactions/{interaction_id}/{interaction_token}/callback"
CHANNEL_MESSAGES = "/channels/{channel_id}/messages"
ORIGINAL = "/webhooks/{webhook_id}/{webhook_token}/messages/@original"


def png(width: int = 8, height: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def invert(data: bytes) -> bytes:
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        ImageOps.invert(image.convert("RGB")).save(buffer, "PNG")
        return buffer.getvalue()


# -- the minimal bot ---------------------------------------------------------------------------


class ResultView(discord.ui.View):
    """Persistent: fixed custom_ids, no timeout, registered with ``bot.add_view``."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Again", custom_id="mini:again")
    async def again(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        assert interaction.message is not None
        await interaction.response.edit_message(content=f"{interaction.message.content} (again)")

    @discord.ui.button(label="Delete", style=discord.ButtonStyle.danger, custom_id="mini:delete")
    async def delete(self, interaction: discord.Interaction, _: discord.ui.Button[Any]) -> None:
        if not interaction.permissions.manage_messages:
            await interaction.response.send_message("You can't delete this.", ephemeral=True)
            return
        assert interaction.message is not None
        await interaction.response.defer()
        await interaction.message.delete()


class PromptModal(discord.ui.Modal, title="Describe the change"):
    prompt: discord.ui.TextInput[Any] = discord.ui.TextInput(
        label="Prompt", custom_id="prompt", max_length=200
    )

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"prompt={self.prompt.value}")


class MiniTree(app_commands.CommandTree["MiniBot"]):
    async def on_error(
        self, interaction: discord.Interaction[MiniBot], error: app_commands.AppCommandError
    ) -> None:
        self.client.errors.append(getattr(error, "original", error))
        if isinstance(error, app_commands.MissingPermissions):
            await interaction.response.send_message("You need Manage Server.", ephemeral=True)


class MiniBot(commands.Bot):
    def __init__(self, guild_id: int, *, intents: discord.Intents | None = None) -> None:
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents or discord.Intents.default(),
            guild_ready_timeout=0.05,
            tree_cls=MiniTree,
        )
        self.guild_id = guild_id
        self.errors: list[BaseException] = []
        self.seen_tokens: list[str] = []
        self.pre_ack_sleep = 0.0
        self.release = asyncio.Event()

    async def setup_hook(self) -> None:
        self.add_view(ResultView())
        add_commands(self)
        await self.tree.sync()
        await self.tree.sync(guild=discord.Object(self.guild_id))

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.seen_tokens.append(interaction.token)


def add_commands(bot: MiniBot) -> None:
    tree = bot.tree

    @tree.command(description="Transform an image")
    @app_commands.describe(image="The image", prompt="What to draw", steps="Sampling steps")
    async def img2img(
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: str,
        steps: app_commands.Range[int, 20, 100] = 25,
        scheduler: Literal["DDIM", "Euler"] = "DDIM",
    ) -> None:
        await interaction.response.defer()
        result = await asyncio.to_thread(invert, await image.read())
        await interaction.edit_original_response(
            content=f"{prompt} ({steps} steps, {scheduler}) for {interaction.user.mention}",
            attachments=[discord.File(io.BytesIO(result), "result.png")],
            view=ResultView(),
            allowed_mentions=discord.AllowedMentions.none(),
        )

    quota = app_commands.Group(
        name="quota",
        description="Manage quotas",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    @quota.command(description="Grant credits")
    @app_commands.checks.has_permissions(manage_guild=True)
    async def grant(
        interaction: discord.Interaction,
        user: discord.Member,
        amount: app_commands.Range[int, 0, 1000],
    ) -> None:
        await interaction.response.send_message(f"granted {amount} to {user.name}", ephemeral=True)

    tree.add_command(quota)

    @tree.command(description="Reply pong")
    async def ping(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("pong")

    @tree.command(description="Defer after the bot's configured sleep")
    async def slow(interaction: discord.Interaction) -> None:
        await asyncio.sleep(bot.pre_ack_sleep)
        await interaction.response.defer()

    @tree.command(description="Defer, then finish when the test releases it")
    async def hold(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await bot.release.wait()
        await interaction.edit_original_response(content="done")

    @tree.command(description="Defer, then upload count files of size bytes")
    async def upload(interaction: discord.Interaction, count: int, size: int) -> None:
        await interaction.response.defer()
        files = [discord.File(io.BytesIO(b"x" * size), f"f{i}.bin") for i in range(count)]
        await interaction.followup.send(files=files)

    @tree.command(description="Open a modal")
    async def ask(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(PromptModal())

    @tree.command(description="Post a result message in the channel")
    async def post(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("posting", ephemeral=True)
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.send(
            f"@everyone result for {interaction.user.mention}",
            view=ResultView(),
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @tree.command(description="Use every interaction webhook route once")
    async def tour(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        await interaction.edit_original_response(content="working")
        await interaction.original_response()
        extra = await interaction.followup.send("extra", wait=True)
        await interaction.followup.fetch_message(extra.id)
        await extra.edit(content="extra, edited")
        await extra.delete()
        await interaction.delete_original_response()

    @tree.context_menu(name="Inspect")
    async def inspect(interaction: discord.Interaction, message: discord.Message) -> None:
        names = ", ".join(f"{a.filename} {a.width}x{a.height}" for a in message.attachments)
        await interaction.response.send_message(f"{message.author.name}: {names}", ephemeral=True)

    @tree.command(description="A guild command", guild=discord.Object(bot.guild_id))
    async def local(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("local", ephemeral=True)


# -- fixtures ----------------------------------------------------------------------------------


@dataclass
class World:
    guild: Guild
    channel: Channel
    alice: Member  # a plain member
    admin: Member  # Manage Server
    mod: Member  # Manage Messages


@pytest.fixture
def world(fake: FakeDiscord) -> World:
    guild = fake.add_guild("Test server")
    return World(
        guild,
        guild.add_text_channel("images"),
        guild.add_member("alice"),
        guild.add_member("root", permissions=MANAGE_GUILD),
        guild.add_member("mod", permissions=MANAGE_MESSAGES),
    )


@pytest.fixture
async def bot(fake: FakeDiscord, world: World) -> AsyncIterator[MiniBot]:
    mini = MiniBot(world.guild.id)
    async with fake.run_bot(mini):
        yield mini


async def first_error(fake: FakeDiscord, bot: MiniBot, within: float = 5.0) -> BaseException:
    return await fake.wait_until(lambda: bot.errors[0] if bot.errors else None, within)


# -- login, sync, gateway ----------------------------------------------------------------------


async def test_login_sync_and_ready(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    routes = [(r.method, r.route) for r in fake.requests]
    assert routes[:2] == [("GET", "/users/@me"), ("GET", "/oauth2/applications/@me")]
    assert ("PUT", "/applications/{application_id}/commands") in routes
    assert ("PUT", "/applications/{application_id}/guilds/{guild_id}/commands") in routes
    assert [c["name"] for c in fake.commands[world.guild.id]] == ["local"]
    synced = {c["name"] for c in fake.commands[None]}
    assert {c.name for c in await bot.tree.fetch_commands()} == synced
    assert {"img2img", "quota", "Inspect"} <= synced
    assert bot.user is not None and bot.user.id == fake.bot_user.id
    assert bot.application_id == fake.application_id
    assert fake.identifies[0].intents == bot.intents.value == fake.intents
    guild = bot.get_guild(world.guild.id)
    assert guild is not None and guild.me.id == fake.bot_user.id
    assert guild.default_role.permissions.value == DEFAULT_EVERYONE_PERMISSIONS
    assert guild.get_member(world.alice.id) is None  # no members intent: only the bot is sent
    fetched_channel = await bot.fetch_channel(world.channel.id)
    assert isinstance(fetched_channel, discord.TextChannel) and fetched_channel.name == "images"
    assert fake.unknown_routes == []


@pytest.mark.parametrize(
    ("command", "field"),
    [
        ({"name": "Img2Img", "description": "upper case", "type": 1}, "name"),
        ({"name": "img2img", "description": "d" * 101, "type": 1}, "description"),
        (
            {
                "name": "img2img",
                "description": "optional first",
                "type": 1,
                "options": [
                    {"name": "a", "description": "a", "type": 3},
                    {"name": "b", "description": "b", "type": 3, "required": True},
                ],
            },
            "options",
        ),
    ],
)
async def test_command_sync_rejects_invalid_commands(
    fake: FakeDiscord, world: World, bot: MiniBot, command: dict[str, Any], field: str
) -> None:
    synced = list(fake.commands[None])
    with pytest.raises(discord.HTTPException) as rejected:
        await bot.http.bulk_upsert_global_commands(fake.application_id, [command, command])
    assert rejected.value.code == 50035
    assert set(fake.requests[-1].response["errors"]["0"]) == {field}
    assert fake.requests[-1].response["errors"]["1"]["name"]  # duplicate name
    assert fake.commands[None] == synced


async def test_wrong_token_is_a_login_failure(fake: FakeDiscord, world: World) -> None:
    with pytest.raises(discord.LoginFailure):
        async with fake.run_bot(MiniBot(world.guild.id), token="not-the-token"):
            pass
    assert [(r.route, r.status) for r in fake.requests] == [("/users/@me", 401)]


async def test_members_intent_gets_members_and_chunks(fake: FakeDiscord, world: World) -> None:
    bot = MiniBot(world.guild.id, intents=discord.Intents.default() | discord.Intents(members=True))
    async with fake.run_bot(bot):
        guild = bot.get_guild(world.guild.id)
        assert guild is not None and guild.chunked
        member = guild.get_member(world.admin.id)
        assert member is not None and member.guild_permissions.manage_guild
        artists = world.guild.add_role("artists")
        fake.give_role(world.alice, artists)
        await fake.wait_until(
            lambda: (m := guild.get_member(world.alice.id)) and m.get_role(artists.id)
        )


async def test_disallowed_privileged_intent_stops_the_bot(fake: FakeDiscord, world: World) -> None:
    fake.privileged_intents = 0
    bot = MiniBot(world.guild.id, intents=discord.Intents.default() | discord.Intents(members=True))
    with pytest.raises(discord.PrivilegedIntentsRequired):
        async with fake.run_bot(bot):
            pass


async def test_auto_sharded_bot_finds_the_gateway_through_rest(
    fake: FakeDiscord, world: World
) -> None:
    bot = commands.AutoShardedBot(
        command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05
    )
    async with fake.run_bot(bot):
        assert ("GET", "/gateway/bot") in [(r.method, r.route) for r in fake.requests]
        assert fake.identifies[0].shard == [0, 1]
        assert bot.get_guild(world.guild.id) is not None


async def test_gateway_drop_resumes_and_replays(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    await fake.drop_gateway()
    late = world.guild.add_text_channel("late")  # dispatched while the socket is down
    await fake.wait_until(lambda: fake.resumes and fake.connected)
    [resume] = fake.resumes
    assert resume.accepted and resume.path == "/gateway/resume" and resume.replayed >= 1
    assert len(fake.identifies) == 1
    await fake.wait_until(lambda: bot.get_channel(late.id))
    it = await fake.slash(world.alice, world.channel, "ping")
    assert (await fake.wait_until(lambda: it.original)).content == "pong"


@pytest.mark.slow
async def test_unresumable_drop_makes_the_bot_identify_again(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    await fake.drop_gateway(resumable=False)
    # discord.py waits 5 s before a re-IDENTIFY (Discord's identify rate limit).
    await fake.wait_until(lambda: len(fake.identifies) == 2 and fake.connected, within=10)
    assert [r.accepted for r in fake.resumes] == [False]
    it = await fake.slash(world.alice, world.channel, "ping")
    assert (await fake.wait_until(lambda: it.original)).content == "pong"


# -- slash commands ----------------------------------------------------------------------------


async def test_slash_command_round_trip(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    source = png(8, 6)
    it = await fake.slash(
        world.alice, world.channel, "img2img", image=("cat.png", source), prompt="a cat", steps=30
    )
    original = await fake.wait_until(
        lambda: it.original if it.original and it.original.attachments else None
    )
    [result] = original.attachments
    assert result.data == invert(source)
    assert (result.filename, result.content_type, result.width, result.height) == (
        "result.png",
        "image/png",
        8,
        6,
    )
    assert it.response_type == 5 and it.ack_latency is not None and it.ack_latency < 3.0
    assert not original.loading and not original.ephemeral and it.followups == []
    assert original.content == f"a cat (30 steps, DDIM) for <@{world.alice.id}>"
    assert not fake.pings(original)
    assert original.custom_ids == ["mini:again", "mini:delete"]
    [sent] = it.data["resolved"]["attachments"].values()
    assert (sent["size"], sent["content_type"], sent["width"], sent["height"]) == (
        len(source),
        "image/png",
        8,
        6,
    )
    assert [c.status for c in fake.cdn_requests] == [200]
    [callback] = [r for r in fake.requests if r.route == CALLBACK]
    assert callback.query == {"with_response": "1"} and callback.body == {"type": 5}
    [edit] = [r for r in fake.requests if r.route == ORIGINAL]
    assert edit.method == "PATCH" and edit.files == [("result.png", len(result.data))]

    liar = Upload("huge.png", source, size=50 * MIB)
    lied = await fake.slash(world.alice, world.channel, "img2img", image=liar, prompt="big")
    [claimed] = lied.data["resolved"]["attachments"].values()
    assert claimed["size"] == 50 * MIB
    await fake.wait_until(lambda: lied.original and lied.original.attachments)


async def test_stand_in_refuses_what_discords_client_would_not_send(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    image = ("cat.png", png())
    refused: dict[str, tuple[str, dict[str, Any]]] = {
        "was never synced": ("nope", {}),
        "declares no option": ("img2img", {"image": image, "prompt": "x", "colour": "red"}),
        r"within 20\.\.100": ("img2img", {"image": image, "prompt": "x", "steps": 101}),
        "one of": ("img2img", {"image": image, "prompt": "x", "scheduler": "LMS"}),
        "cannot take": ("img2img", {"image": image, "prompt": "x", "steps": "30"}),
        "missing required": ("img2img", {"prompt": "x"}),
        "needs a subcommand": ("quota", {}),
        "has no subcommand 'admin'": ("quota admin grant", {"amount": 1}),
    }
    for reason, (command, options) in refused.items():
        with pytest.raises(CommandRefused, match=reason):
            await fake.slash(world.admin, world.channel, command, **options)
    assert fake.interactions == []

    it = await fake.slash(
        world.alice, world.channel, "img2img", raw=True, image=image, prompt="x", steps=5
    )
    original = await fake.wait_until(
        lambda: it.original if it.original and it.original.attachments else None
    )
    assert "(5 steps" in original.content  # only the bot's own validation could have stopped this
    unsynced = await fake.slash(world.alice, world.channel, "nope", raw=True)
    assert isinstance(await first_error(fake, bot), app_commands.CommandNotFound)
    assert not unsynced.acknowledged


async def test_permissions_come_from_roles(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    with pytest.raises(CommandRefused, match="default_member_permissions"):
        await fake.slash(world.alice, world.channel, "quota grant", user=world.admin, amount=5)

    denied = await fake.slash(
        world.alice, world.channel, "quota grant", raw=True, user=world.admin, amount=5
    )
    assert not denied.member_permissions & MANAGE_GUILD
    reply = await fake.wait_until(lambda: denied.original)
    assert reply.ephemeral and reply.content == "You need Manage Server."

    granted = await fake.slash(
        world.admin, world.channel, "quota grant", user=world.alice, amount=5
    )
    assert granted.member_permissions & MANAGE_GUILD
    assert granted.app_permissions == DEFAULT_BOT_PERMISSIONS
    assert granted.data["options"] == [
        {
            "name": "grant",
            "type": 1,
            "options": [
                {"name": "user", "type": 6, "value": str(world.alice.id)},
                {"name": "amount", "type": 4, "value": 5},
            ],
        }
    ]
    assert str(world.alice.id) in granted.data["resolved"]["members"]
    reply = await fake.wait_until(lambda: granted.original)
    assert reply.ephemeral and reply.content == "granted 5 to alice"

    [own_role] = [r for r in world.admin.roles if r.permissions == MANAGE_GUILD]
    fake.remove_role(world.admin, own_role)
    with pytest.raises(CommandRefused, match="default_member_permissions"):
        await fake.slash(world.admin, world.channel, "quota grant", user=world.alice, amount=5)
    assert world.guild.owner is not None
    assert world.guild.owner.permissions_in(world.channel) == ALL_PERMISSIONS


async def test_channel_routes_check_the_bots_permissions(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    channel = bot.get_channel(world.channel.id)
    assert isinstance(channel, discord.TextChannel)
    assert world.guild.bot_member is not None
    world.channel.set_overwrite(world.guild.bot_member, deny=SEND_MESSAGES)
    with pytest.raises(discord.Forbidden) as denied:
        await channel.send("hello")
    assert denied.value.code == 50013
    world.channel.set_overwrite(world.guild.everyone, deny=VIEW_CHANNEL)
    with pytest.raises(discord.Forbidden) as hidden:
        await channel.send("hello")
    assert hidden.value.code == 50001
    assert world.alice.permissions_in(world.channel) == 0
    assert world.channel.messages == []


# -- acknowledgement rules ---------------------------------------------------------------------


@pytest.mark.slow
async def test_first_response_after_three_seconds_gets_10062(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    assert fake.ack_deadline == 3.0
    bot.pre_ack_sleep = 3.5
    it = await fake.slash(world.alice, world.channel, "slow")
    error = await first_error(fake, bot, within=8)
    assert isinstance(error, discord.NotFound) and error.code == 10062
    assert not it.acknowledged
    [callback] = fake.callbacks
    assert callback.code == 10062 and callback.latency >= 3.5
    # Nothing can be sent on the token of an interaction that was never acknowledged.
    hook = f"{fake.api_base}/webhooks/{fake.application_id}/{bot.seen_tokens[0]}"
    async with aiohttp.ClientSession() as http, http.post(hook, json={"content": "x"}) as answer:
        assert (answer.status, (await answer.json())["code"]) == (404, 10015)


async def test_second_acknowledgement_gets_40060(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    it = await fake.slash(world.alice, world.channel, "ping")
    await fake.wait_until(lambda: it.acknowledged)
    await fake.redeliver(it)
    error = await first_error(fake, bot)
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (400, 40060)
    assert it.deliveries == 2 and [c.status for c in fake.callbacks] == [200, 400]
    assert [m.content for m in world.channel.messages] == ["pong"]


async def test_webhook_calls_fail_once_the_token_expired(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    it = await fake.slash(world.alice, world.channel, "hold")
    await fake.wait_until(lambda: it.acknowledged)
    fake.advance_time(15 * 60 + 1)
    bot.release.set()
    error = await first_error(fake, bot)
    # What Discord answers for an expired interaction token: 401 Invalid Webhook Token.
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == (401, 50027)
    assert it.original is not None and it.original.loading


@pytest.mark.parametrize(
    ("count", "size", "failure"),
    [(1, 1025, (413, 40005)), (11, 1, (400, 30015)), (10, 1024, None)],
    ids=["file-too-large", "eleven-files", "ten-files-at-the-limit"],
)
async def test_upload_limits(
    fake: FakeDiscord,
    world: World,
    bot: MiniBot,
    count: int,
    size: int,
    failure: tuple[int, int] | None,
) -> None:
    fake.upload_limit = 1024
    it = await fake.slash(world.alice, world.channel, "upload", count=count, size=size)
    await fake.wait_until(lambda: bot.errors or (it.original and it.original.attachments))
    assert it.original is not None
    if failure is None:
        assert len(it.original.attachments) == 10 and it.followups == []
        return
    [error] = bot.errors
    assert isinstance(error, discord.HTTPException) and (error.status, error.code) == failure
    assert it.original.loading and it.original.attachments == []


# -- components, modals, context menus ---------------------------------------------------------


async def test_persistent_buttons_route_to_a_restarted_bot(fake: FakeDiscord, world: World) -> None:
    async with fake.run_bot(MiniBot(world.guild.id)):
        await fake.slash(world.alice, world.channel, "post")
        posted = await fake.wait_until(
            lambda: next((m for m in world.channel.messages if m.custom_ids), None)
        )
    assert posted.author is fake.bot_user and posted.interaction is None
    assert "@everyone" in posted.content and not fake.pings(posted)

    async with fake.run_bot(MiniBot(world.guild.id)):
        again = await fake.click(world.alice, posted, "mini:again")
        await fake.wait_until(lambda: posted.content.endswith("(again)"))
        assert again.response_type == 7 and again.original is posted
        denied = await fake.click(world.alice, posted, "mini:delete")
        reply = await fake.wait_until(lambda: denied.original)
        assert reply.ephemeral and "can't" in reply.content and not posted.deleted
        allowed = await fake.click(world.mod, posted, "mini:delete")
        await fake.wait_until(lambda: posted.deleted)
        assert allowed.response_type == 6
    assert len(fake.identifies) == 2
    with pytest.raises(CommandRefused):
        await fake.click(world.alice, posted, "mini:again")


async def test_modal_submit(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    it = await fake.slash(world.alice, world.channel, "ask")
    modal = await fake.wait_until(lambda: it.modal)
    assert it.response_type == 9 and modal["title"] == "Describe the change"
    with pytest.raises(CommandRefused, match="no input"):
        await fake.submit_modal(world.alice, it, {"nope": "x"})
    with pytest.raises(CommandRefused, match="left empty"):
        await fake.submit_modal(world.alice, it, {})
    submit = await fake.submit_modal(world.alice, it, {"prompt": "a red fox"})
    reply = await fake.wait_until(lambda: submit.original)
    assert submit.type == 5 and reply.content == "prompt=a red fox"


async def test_message_context_menu(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    target = await fake.post_message(
        world.alice, world.channel, "look", files=[("photo.png", png(12, 10))]
    )
    it = await fake.message_command(world.alice, target, "Inspect")
    reply = await fake.wait_until(lambda: it.original)
    assert reply.ephemeral and reply.content == "alice: photo.png 12x10"
    assert it.data["target_id"] == str(target.id)
    assert it.data["resolved"]["messages"][str(target.id)]["content"] == "look"
    with pytest.raises(CommandRefused, match="never synced"):
        await fake.message_command(world.alice, target, "Missing")


# -- messages ----------------------------------------------------------------------------------


def _row(*custom_ids: str) -> dict[str, Any]:
    return {"type": 1, "components": [{"type": 2, "style": 1, "custom_id": c} for c in custom_ids]}


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({"content": "x" * 2001}, 50035, "content"),
        ({"embeds": [{"title": "t" * 257}]}, 50035, "embeds"),
        ({"embeds": [{"description": "d"}] * 11}, 50035, "embeds"),
        ({"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]}, 50035, "embeds"),
        ({"embeds": [{"footer": {"text": "f" * 2049}}]}, 50035, "embeds"),
        ({"embeds": [{"description": "d" * 4096}, {"description": "d" * 2000}]}, 50035, "embeds"),
        ({"components": [_row(f"r{i}") for i in range(6)]}, 50035, "components"),
        ({"components": [_row(*(f"b{i}" for i in range(6)))]}, 50035, "components"),
        ({"components": [_row("c" * 101)]}, 50035, "components"),
        ({"components": [_row("same", "same")]}, 50035, "components"),
        (
            {"content": "x", "allowed_mentions": {"parse": ["users"], "users": ["1"]}},
            50035,
            "allowed_mentions",
        ),
        ({}, 50006, None),
    ],
)
async def test_invalid_message_bodies_are_rejected(
    fake: FakeDiscord,
    world: World,
    bot: MiniBot,
    body: dict[str, Any],
    code: int,
    field: str | None,
) -> None:
    route = discord.http.Route("POST", CHANNEL_MESSAGES, channel_id=world.channel.id)
    with pytest.raises(discord.HTTPException) as rejected:
        await bot.http.request(route, json=body)
    assert (rejected.value.status, rejected.value.code) == (400, code)
    if field is not None:
        assert field in fake.requests[-1].response["errors"]
    assert world.channel.messages == []


async def test_largest_valid_message_is_accepted(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    body = {
        "content": "x" * 2000,
        "embeds": [{"title": "t", "fields": [{"name": "n", "value": "v"}] * 25}] * 10,
        "components": [_row(*(f"b{r}{c}" for c in range(5))) for r in range(5)],
        "allowed_mentions": {"parse": []},
    }
    route = discord.http.Route("POST", CHANNEL_MESSAGES, channel_id=world.channel.id)
    data = await bot.http.request(route, json=body)
    [message] = world.channel.messages
    assert data["id"] == str(message.id) and len(message.custom_ids) == 25
    assert all(f["inline"] is False for e in data["embeds"] for f in e["fields"])


async def test_channel_message_lifecycle_and_nonce(
    fake: FakeDiscord, world: World, bot: MiniBot
) -> None:
    channel = bot.get_channel(world.channel.id)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("hello", file=discord.File(io.BytesIO(png()), "a.png"))
    assert (await channel.fetch_message(sent.id)).content == "hello"
    [record] = world.channel.messages
    await sent.edit(content="hello again")  # attachments not mentioned: kept
    assert record.content == "hello again" and [a.filename for a in record.attachments] == ["a.png"]
    await sent.edit(attachments=[])  # listed as none: removed
    assert record.attachments == [] and [h["content"] for h in record.history] == [
        "hello",
        "hello again",
    ]
    await sent.delete()
    assert world.channel.messages == [] and record.deleted
    # discord.py retries a 500 by itself; its send() sets a nonce with enforce_nonce, so the
    # retry returns the first message. A request without a nonce is posted twice.
    fake.fail("POST", CHANNEL_MESSAGES, status=500, after_effect=True)
    await channel.send("once")
    fake.fail("POST", CHANNEL_MESSAGES, status=500, after_effect=True)
    route = discord.http.Route("POST", CHANNEL_MESSAGES, channel_id=world.channel.id)
    await bot.http.request(route, json={"content": "twice"})
    assert [m.content for m in world.channel.messages] == ["once", "twice", "twice"]


async def test_pings_follow_allowed_mentions(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    channel = bot.get_channel(world.channel.id)
    assert isinstance(channel, discord.TextChannel) and world.guild.bot_member is not None
    artists = world.guild.add_role("artists", mentionable=True)
    staff = world.guild.add_role("staff")
    text = f"@everyone <@{world.alice.id}> <@&{artists.id}> <@&{staff.id}>"
    loud = await channel.send(text)  # allowed_mentions absent: Discord parses everything
    quiet = await channel.send(text, allowed_mentions=discord.AllowedMentions.none())
    only_alice = await channel.send(
        text,
        allowed_mentions=discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(world.alice.id)]
        ),
    )
    stored = {m.id: m for m in world.channel.messages}
    everyone = Pings(frozenset({world.alice.id}), frozenset({artists.id, staff.id}), True)
    assert fake.pings(stored[loud.id]) == everyone and loud.mention_everyone
    assert not fake.pings(stored[quiet.id]) and not quiet.mention_everyone
    assert fake.pings(stored[only_alice.id]) == Pings(users=frozenset({world.alice.id}))
    asked = await fake.post_message(world.alice, world.channel, "can I have one?")
    reply = await channel.send("here", reference=channel.get_partial_message(asked.id))
    quiet_reply = await channel.send(
        "here", reference=channel.get_partial_message(asked.id), mention_author=False
    )
    stored = {m.id: m for m in world.channel.messages}
    assert stored[reply.id].type == 19 and stored[reply.id].reference is asked
    assert fake.pings(stored[reply.id]) == Pings(users=frozenset({world.alice.id}))
    assert not fake.pings(stored[quiet_reply.id])
    # Without Mention Everyone, only mentionable roles and users can be pinged.
    [bot_role] = world.guild.bot_member.roles
    fake.set_role_permissions(bot_role, DEFAULT_EVERYONE_PERMISSIONS)
    assert fake.pings(stored[loud.id]) == Pings(
        frozenset({world.alice.id}), frozenset({artists.id})
    )


# -- CDN, faults, records ----------------------------------------------------------------------


async def test_cdn_urls_are_signed_and_expire(fake: FakeDiscord, world: World) -> None:
    message = await fake.post_message(world.alice, world.channel, files=[("a.png", png())])
    [attachment] = message.attachments
    url = yarl.URL(fake.cdn_url(attachment))
    async with aiohttp.ClientSession() as http:

        async def fetch(target: yarl.URL) -> tuple[int, bytes]:
            async with http.get(target) as response:
                return response.status, await response.read()

        assert await fetch(url) == (200, attachment.data)
        assert (await fetch(url.with_query(None)))[0] == 404
        assert (await fetch(url.update_query(hm="0" * 64)))[0] == 404
        assert (await fetch(yarl.URL(fake.cdn_url(attachment, media=True))))[0] == 200
        fake.advance_time(fake.cdn_ttl + 1)
        assert (await fetch(url))[0] == 404
    assert [r.status for r in fake.cdn_requests] == [200, 404, 404, 200, 404]


async def test_fault_injection(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    limited = fake.fail("POST", CALLBACK, status=429, retry_after=0.05)
    it = await fake.slash(world.alice, world.channel, "ping")
    await fake.wait_until(lambda: it.acknowledged)
    assert limited.hits == 1
    assert [r.status for r in fake.requests if r.route == CALLBACK] == [429, 200]

    fake.fail("POST", CALLBACK, status=404, code=10062, message="Unknown interaction")
    lost = await fake.slash(world.alice, world.channel, "ping")
    error = await first_error(fake, bot)
    assert isinstance(error, discord.NotFound) and error.code == 10062 and not lost.acknowledged

    fake.delay("POST", CALLBACK, 0.3, times=1)
    slow = await fake.slash(world.alice, world.channel, "ping")
    await fake.wait_until(lambda: slow.acknowledged)
    assert slow.ack_latency is not None and slow.ack_latency >= 0.3

    with pytest.raises(ValueError, match="not a route"):
        fake.fail("POST", "/channels/{id}/messages", status=500)
    audit_log = discord.http.Route("GET", "/guilds/{guild_id}/audit-logs", guild_id=world.guild.id)
    with pytest.raises(discord.NotFound):
        await bot.http.request(audit_log)
    [unknown] = fake.unknown_routes
    assert unknown.path == f"/guilds/{world.guild.id}/audit-logs"
    assert unknown.response == {"code": 0, "message": "404: Not Found"}


async def test_records_hold_no_tokens(
    fake: FakeDiscord, world: World, bot: MiniBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="tests.standins.fake_discord")
    it = await fake.slash(world.alice, world.channel, "tour")
    await fake.wait_until(lambda: it.original and it.original.deleted)
    records = repr(
        (
            fake.requests,
            fake.callbacks,
            fake.interactions,
            fake.messages,
            list(fake.gateway_log),
            fake.identifies,
            fake.resumes,
            fake.cdn_requests,
        )
    )
    assert bot.seen_tokens
    for secret in [*bot.seen_tokens, fake.token]:
        assert secret not in records and secret not in caplog.text
    assert any(f"/{REDACTED}/" in r.path for r in fake.requests)


async def test_every_recorded_response_matches_discords_openapi_spec(
    fake: FakeDiscord, world: World, bot: MiniBot, session_exchanges: list[RequestRecord]
) -> None:
    """Keeps the stand-in honest: every response of the session against Discord's spec."""
    spec = load_spec()
    if spec is None:
        pytest.fail("Discord's OpenAPI spec is missing: ../shared/discord-api-spec/openapi.json")
    await _tour(fake, world, bot)
    records = [*session_exchanges, *fake.requests]
    assert assert_records_match_spec(spec, records) >= len(fake.endpoints)
    assert all(spec.has_route(e.method, e.route) for e in fake.endpoints)
    answered = {(r.method, r.route) for r in records if 200 <= r.status < 300}
    assert {(e.method, e.route) for e in fake.endpoints} <= answered


async def _tour(fake: FakeDiscord, world: World, bot: MiniBot) -> None:
    """Touches every implemented route with a success, through discord.py's own API."""
    it = await fake.slash(world.alice, world.channel, "tour")
    await fake.wait_until(lambda: it.original and it.original.deleted)
    await bot.tree.fetch_commands()
    await bot.tree.fetch_commands(guild=discord.Object(world.guild.id))
    await bot.http.get_bot_gateway()
    await bot.fetch_channel(world.channel.id)
    channel = bot.get_channel(world.channel.id)
    assert isinstance(channel, discord.TextChannel)
    message = await channel.send("tour", view=ResultView())
    await channel.fetch_message(message.id)
    await message.edit(content="tour, edited")
    await message.delete()
