"""/quota: admins manage members' credits, allowances, blocks, reports and the account.

Hidden from members by ``default_permissions(manage_guild=True)`` AND checked on every call
(``interaction_check``): the default is only a hint that a server can override, and the
interaction's own permissions are what Discord computed at the moment of the click.
Every change is written to the ledger's journal with the admin as its actor.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs.credits import credits_embed
from bot.core.ledger import AccountState, Period
from bot.ui import embeds
from bot.ui.chart import usage_chart

if TYPE_CHECKING:
    from bot.bot import SdBot

MAX_AMOUNT = 1_000_000
Amount = app_commands.Range[int, 1, MAX_AMOUNT]
Balance = app_commands.Range[int, 0, MAX_AMOUNT]
Reason = app_commands.Range[str, 1, 200]
PERIODS = [app_commands.Choice(name=p.value, value=p.value) for p in Period]


def _actor(interaction: discord.Interaction) -> str:
    return f"discord:{interaction.user.id}"


def _guild(interaction: discord.Interaction) -> int:
    assert interaction.guild_id is not None  # the group is guild_only
    return interaction.guild_id


def account_embed(state: AccountState) -> discord.Embed:
    embed = discord.Embed(title="Image account", colour=embeds.COLOUR_QUEUED)
    seen = discord.utils.format_dt(state.seen_at, "R") if state.seen_at else "never"
    remaining = "unknown" if state.remaining is None else f"{state.remaining}"
    embed.add_field(name="Last seen balance", value=f"{remaining} (seen {seen})")
    embed.add_field(name="Floor", value=str(state.floor))
    embed.add_field(name="Held by open jobs (estimate)", value=str(state.open_cost))
    embed.add_field(
        name="Spent today (UTC)",
        value=f"{state.spent_today_credits} credits in {state.jobs_today} jobs "
        f"(≈ {state.spent_today_account} on the account)",
        inline=False,
    )
    status = f"PAUSED: {state.pause_reason}" if state.paused else "running"
    embed.add_field(name="Generation", value=status, inline=False)
    return embed


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class Quota(commands.GroupCog, group_name="quota", group_description="Manage image credits"):
    def __init__(self, bot: SdBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if not interaction.permissions.manage_guild:
            raise app_commands.MissingPermissions(["manage_guild"])
        return True

    async def _reply(self, interaction: discord.Interaction, text: str) -> None:
        await interaction.response.send_message(text, ephemeral=True)

    @app_commands.command(name="show", description="A member's credits, allowance and jobs")
    async def show(self, interaction: discord.Interaction, user: discord.User) -> None:
        ledger = self.bot.ledger
        balance = await ledger.balance(_guild(interaction), user.id)
        jobs = await ledger.recent_jobs(_guild(interaction), user.id, 5)
        embed = credits_embed(balance, None, jobs)
        embed.title = f"Credits of {embeds.user_text(user.display_name, 200)}"
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="grant", description="Give a member extra credits")
    @app_commands.describe(amount="Credits to add", reason="Why (kept in the journal)")
    async def grant(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        amount: Amount,
        reason: Reason | None = None,
    ) -> None:
        balance = await self.bot.ledger.grant(
            _guild(interaction), user.id, amount, actor=_actor(interaction), reason=reason
        )
        await self._reply(
            interaction,
            f"Granted {amount} credits to {user.mention}: {balance.available} available.",
        )

    @app_commands.command(name="set", description="Set a member's available credits")
    @app_commands.describe(amount="The new available balance", reason="Why (kept in the journal)")
    async def set_(
        self,
        interaction: discord.Interaction,
        user: discord.User,
        amount: Balance,
        reason: Reason | None = None,
    ) -> None:
        balance = await self.bot.ledger.set_balance(
            _guild(interaction), user.id, amount, actor=_actor(interaction), reason=reason
        )
        await self._reply(
            interaction, f"{user.mention} now has {balance.available} credits available."
        )

    @app_commands.command(name="allowance", description="The server's default refill per period")
    @app_commands.describe(amount="Credits per period", period="How often it refills")
    @app_commands.choices(period=PERIODS)
    async def allowance(
        self, interaction: discord.Interaction, amount: Balance, period: str
    ) -> None:
        result = await self.bot.ledger.set_allowance(
            _guild(interaction), amount, Period(period), actor=_actor(interaction)
        )
        await self._reply(
            interaction,
            f"Members now get {result.amount} credits per {result.period.value} "
            "(a role allowance can raise it).",
        )

    @app_commands.command(name="role", description="A role's allowance (members get their best)")
    @app_commands.describe(amount="Credits per period for members with this role (0 removes it)")
    async def role(
        self, interaction: discord.Interaction, role: discord.Role, amount: Balance
    ) -> None:
        await self.bot.ledger.set_role_allowance(
            _guild(interaction), role.id, amount, actor=_actor(interaction)
        )
        await self._reply(
            interaction, f"Members with {role.mention} get at least {amount} per period."
        )

    @app_commands.command(name="block", description="Stop a member from generating images")
    async def block(
        self, interaction: discord.Interaction, user: discord.User, reason: Reason | None = None
    ) -> None:
        await self.bot.ledger.block(
            _guild(interaction), user.id, actor=_actor(interaction), reason=reason
        )
        await self._reply(interaction, f"{user.mention} is blocked from generating images.")

    @app_commands.command(name="unblock", description="Let a blocked member generate again")
    async def unblock(self, interaction: discord.Interaction, user: discord.User) -> None:
        await self.bot.ledger.unblock(_guild(interaction), user.id, actor=_actor(interaction))
        await self._reply(interaction, f"{user.mention} can generate images again.")

    @app_commands.command(name="report", description="Top members and spend, with a chart")
    @app_commands.describe(days="How many days back (default 7)")
    async def report(
        self, interaction: discord.Interaction, days: app_commands.Range[int, 1, 90] = 7
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        ledger = self.bot.ledger
        rows = await ledger.usage(_guild(interaction), days, limit=10)
        per_day = await ledger.spend_per_day(_guild(interaction), days)
        spent = {d.day: d.credits for d in per_day}
        today = datetime.now(UTC).date()
        series = [(day, spent.get(day, 0)) for day in (today - timedelta(n) for n in range(days))]
        chart = usage_chart(series[::-1], f"Credits spent per day, last {days} days")
        lines = [
            f"<@{r.user_id}>: {r.credits_spent} credits, {r.succeeded} images, {r.failed} failed"
            for r in rows
        ]
        embed = discord.Embed(
            title=f"Usage, last {days} days",
            description="\n".join(lines) or "No jobs in this period.",
            colour=embeds.COLOUR_QUEUED,
        )
        embed.set_image(url="attachment://usage.png")
        await interaction.edit_original_response(
            embed=embed, attachments=[discord.File(io.BytesIO(chart), filename="usage.png")]
        )

    @app_commands.command(name="account", description="The image account's balance and state")
    async def account(self, interaction: discord.Interaction) -> None:
        state = await self.bot.ledger.account_state()
        await interaction.response.send_message(embed=account_embed(state), ephemeral=True)

    @app_commands.command(name="resume", description="Resume generation after a pause")
    async def resume(self, interaction: discord.Interaction) -> None:
        state = await self.bot.ledger.resume(actor=_actor(interaction))
        await interaction.response.send_message(
            "Generation resumed.", embed=account_embed(state), ephemeral=True
        )


async def setup(bot: SdBot) -> None:
    await bot.add_cog(Quota(bot))
