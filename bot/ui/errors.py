"""The one place where any error reaching the command tree becomes what the member reads.

The core's own errors carry their message (``SdbotError.user_message``); this module adds the
messages for discord.py's errors and hides everything unexpected behind a generic line
(logged with its traceback, never shown).
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.core.errors import SdbotError
from bot.ui import embeds

log = logging.getLogger(__name__)

ALREADY_ACKNOWLEDGED = 40060  # the same interaction delivered twice
UNKNOWN_INTERACTION = 10062  # too late to answer (3 s) or token expired

_PERMISSION_NAMES = {"manage_guild": "Manage Server", "manage_messages": "Manage Messages"}


def message_for(error: Exception) -> str | None:
    """What to tell the member, or None when nothing can or should be said."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, SdbotError):
        return error.user_message
    if isinstance(error, discord.HTTPException) and error.code in (
        ALREADY_ACKNOWLEDGED,
        UNKNOWN_INTERACTION,
    ):
        return None
    if isinstance(error, app_commands.MissingPermissions):
        names = ", ".join(_PERMISSION_NAMES.get(p, p) for p in error.missing_permissions)
        return f"You need the {names} permission to use this command."
    if isinstance(error, app_commands.NoPrivateMessage):
        return "This command works only in a server."
    if isinstance(error, app_commands.TransformerError):
        return f"That value is not valid for this option: {error.value!r:.100}."
    if isinstance(error, app_commands.CheckFailure):
        return "You cannot use this command here."
    log.error("unexpected error in a command", exc_info=error)
    return "Something went wrong on the bot's side; nothing was charged."


async def report(interaction: discord.Interaction, error: Exception) -> None:
    message = message_for(error)
    if message is None:
        log.info("interaction %s could not be answered: %s", interaction.id, error)
        return
    embed = embeds.failure(message)
    try:
        if interaction.response.is_done():
            await interaction.edit_original_response(content=None, embed=embed, view=None)
        else:
            await interaction.response.send_message(embed=embed, ephemeral=True)
    except discord.HTTPException as failure:
        log.info("could not report an error to interaction %s: %s", interaction.id, failure)


class SdTree(app_commands.CommandTree[discord.Client]):
    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await report(interaction, error)
