"""Embeds the bot shows: queue status, results, errors. All text a member supplied is escaped
(markdown and mentions) and cut to Discord's embed limits."""

from __future__ import annotations

import discord

from bot.core.params import Img2ImgParams, JobParams, OutpaintParams, format_size
from bot.core.presets import Direction

COLOUR_QUEUED = discord.Colour.blurple()
COLOUR_DONE = discord.Colour.green()
COLOUR_FAILED = discord.Colour.red()

FIELD_MAX = 1024


def user_text(text: str, limit: int = FIELD_MAX) -> str:
    """A member's text made inert: no markdown, no mentions, within ``limit`` characters."""
    safe = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def _settings_fields(embed: discord.Embed, params: JobParams) -> None:
    embed.add_field(name="Prompt", value=user_text(params.prompt) or "—", inline=False)
    if params.negative_prompt:
        embed.add_field(
            name="Negative prompt", value=user_text(params.negative_prompt), inline=False
        )
    embed.add_field(name="Seed", value=str(params.seed))
    embed.add_field(name="Steps", value=str(params.steps))
    embed.add_field(name="Strength / guidance", value=f"{params.strength:g} / {params.guidance:g}")
    embed.add_field(name="Scheduler", value=params.scheduler)
    if isinstance(params, Img2ImgParams):
        embed.add_field(name="Size", value=format_size(params.size))
        if params.samples > 1:
            embed.add_field(name="Samples", value=str(params.samples))
    elif isinstance(params, OutpaintParams):
        embed.add_field(name="Canvas", value=format_size(params.canvas))
        embed.add_field(name="Direction", value=Direction(params.direction).label)


def title(params: JobParams) -> str:
    return "Img2img" if isinstance(params, Img2ImgParams) else "Outpaint"


def queued(params: JobParams, cost: int, position: int | None, running: bool) -> discord.Embed:
    if running:
        status = "Generating…"
    elif position is not None:
        status = f"Queued — position {position}"
    else:
        status = "Queued"
    embed = discord.Embed(
        title=f"{title(params)}: {status}",
        description=f"This job costs **{cost}** credits, charged only if it succeeds.",
        colour=COLOUR_QUEUED,
    )
    _settings_fields(embed, params)
    return embed


def result(
    params: JobParams,
    *,
    requester_id: int,
    cost: int,
    balance_left: int | None,
    image_filename: str | None,
) -> discord.Embed:
    embed = discord.Embed(
        title=title(params),
        description=f"Requested by <@{requester_id}>",  # mentions are off: names, never pings
        colour=COLOUR_DONE,
    )
    _settings_fields(embed, params)
    embed.add_field(name="Cost", value=f"{cost} credits")
    if balance_left is not None:
        embed.add_field(name="Their balance", value=f"{balance_left} credits")
    if image_filename:
        embed.set_image(url=f"attachment://{image_filename}")
    return embed


def failure(message: str) -> discord.Embed:
    return discord.Embed(description=message, colour=COLOUR_FAILED)
