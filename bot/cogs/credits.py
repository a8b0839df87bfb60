"""/credits: a member's balance, holds, allowance, pause state and last jobs (ephemeral).

Results a member never received (a post that failed) are attached here too, so a produced
image is always retrievable.
"""

from __future__ import annotations

import asyncio
import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.core.ledger import Balance, JobRecord, JobStatus
from bot.ui import embeds

if TYPE_CHECKING:
    from bot.bot import SdBot

MAX_FILES = 10  # Discord's per-message attachment limit
LAST_JOBS = 5


def _when(job: JobRecord) -> str:
    return discord.utils.format_dt(job.queued_at, "R")


def _job_line(job: JobRecord) -> str:
    kind = job.params.get("kind", "job")
    seed = f", seed {job.seed}" if job.seed is not None else ""
    charged = (
        f"{job.cost} credits"
        if job.status in (JobStatus.SUCCEEDED, JobStatus.DELIVERED)
        else (f"{job.cost} credits held" if job.status.is_open else "not charged")
    )
    return f"{_when(job)} **{kind}** — {job.status.value} ({charged}{seed})"


def credits_embed(
    balance: Balance, paused_reason: str | None, jobs: list[JobRecord]
) -> discord.Embed:
    embed = discord.Embed(title="Your credits", colour=embeds.COLOUR_QUEUED)
    embed.add_field(name="Available", value=str(balance.available))
    embed.add_field(name="Held by queued jobs", value=str(balance.held))
    embed.add_field(name="Spent", value=str(balance.spent))
    if balance.allowance and balance.period.value != "none":
        refill = discord.utils.format_dt(balance.next_refill, "R") if balance.next_refill else "—"
        embed.add_field(
            name="Allowance", value=f"{balance.allowance} per {balance.period.value}, next {refill}"
        )
    else:
        embed.add_field(name="Allowance", value="none (credits come from admins' grants)")
    if balance.blocked:
        reason = (
            f": {embeds.user_text(balance.blocked_reason, 200)}" if balance.blocked_reason else ""
        )
        embed.add_field(
            name="Blocked", value=f"You are blocked on this server{reason}", inline=False
        )
    if paused_reason:
        embed.add_field(name="Generation is paused", value=paused_reason, inline=False)
    if jobs:
        embed.add_field(
            name="Last jobs", value="\n".join(_job_line(j) for j in jobs)[:1024], inline=False
        )
    return embed


class Credits(commands.Cog):
    def __init__(self, bot: SdBot) -> None:
        self.bot = bot

    @app_commands.command(name="credits", description="Your credits, allowance and last jobs")
    @app_commands.guild_only()
    async def credits(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None
        ledger = self.bot.ledger
        roles = [role.id for role in getattr(interaction.user, "roles", [])]
        balance = await ledger.refill(interaction.guild_id, interaction.user.id, roles)
        state = await ledger.account_state()
        jobs = await ledger.recent_jobs(interaction.guild_id, interaction.user.id, LAST_JOBS)
        files, undelivered = await self._undelivered(jobs)
        embed = credits_embed(balance, state.pause_reason if state.paused else None, jobs)
        if files:
            embed.set_footer(text="Attached: results of yours that could not be posted earlier.")
        await interaction.edit_original_response(embed=embed, attachments=files)
        for job in undelivered:
            await ledger.mark_delivered(job.job_key)

    async def _undelivered(
        self, jobs: list[JobRecord]
    ) -> tuple[list[discord.File], list[JobRecord]]:
        files: list[discord.File] = []
        taken: list[JobRecord] = []
        for job in jobs:
            if job.status is not JobStatus.SUCCEEDED:
                continue
            images = await asyncio.to_thread(self.bot.store.load_result, job.job_key)
            if len(files) + len(images) > MAX_FILES:
                break
            files += [discord.File(io.BytesIO(i.data), filename=i.filename) for i in images]
            taken.append(job)
        return files, taken


async def setup(bot: SdBot) -> None:
    await bot.add_cog(Credits(bot))
