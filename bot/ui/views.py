"""Persistent buttons. The action and the job live in the ``custom_id`` (``sdbot:<action>:<job>``),
so a button keeps working after the bot restarts: discord.py rebuilds it from the id through
``add_dynamic_items`` and the generation cog handles the click.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Any

import discord

from bot.ui import errors

if TYPE_CHECKING:
    from bot.cogs.generate import Generation


class Action(enum.StrEnum):
    REROLL = "reroll"
    VARY = "vary"
    ZOOM = "zoom"
    DELETE = "delete"
    RETRY = "retry"
    CANCEL = "cancel"


_LOOK: dict[Action, tuple[str, discord.ButtonStyle, str | None]] = {
    Action.REROLL: ("Re-roll", discord.ButtonStyle.secondary, "🎲"),
    Action.VARY: ("Vary", discord.ButtonStyle.secondary, "🔀"),
    Action.ZOOM: ("Zoom out", discord.ButtonStyle.secondary, "🔍"),
    Action.DELETE: ("Delete", discord.ButtonStyle.danger, "🗑️"),
    Action.RETRY: ("Retry", discord.ButtonStyle.primary, "🔁"),
    Action.CANCEL: ("Cancel", discord.ButtonStyle.danger, None),
}


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=re.compile(
        r"sdbot:(?P<action>reroll|vary|zoom|delete|retry|cancel):(?P<job>[0-9A-Za-z_-]{1,64})"
    ),
):
    def __init__(self, action: Action, job_key: str) -> None:
        label, style, emoji = _LOOK[action]
        super().__init__(
            discord.ui.Button(
                label=label, style=style, emoji=emoji, custom_id=f"sdbot:{action}:{job_key}"
            )
        )
        self.action = action
        self.job_key = job_key

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction,
        item: discord.ui.Item[Any],
        match: re.Match[str],
    ) -> JobButton:
        return cls(Action(match["action"]), match["job"])

    async def callback(self, interaction: discord.Interaction) -> None:
        cog: Generation | None = interaction.client.get_cog("Generation")  # type: ignore[attr-defined]
        if cog is None:
            return
        try:
            await cog.on_button(interaction, self.action, self.job_key)
        except Exception as error:  # component errors bypass the command tree's handler
            await errors.report(interaction, error)


def _view(*buttons: JobButton) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    for button in buttons:
        view.add_item(button)
    return view


def result_view(job_key: str) -> discord.ui.View:
    return _view(
        JobButton(Action.REROLL, job_key),
        JobButton(Action.VARY, job_key),
        JobButton(Action.ZOOM, job_key),
        JobButton(Action.DELETE, job_key),
    )


def retry_view(job_key: str) -> discord.ui.View:
    return _view(JobButton(Action.RETRY, job_key))


def cancel_view(job_key: str) -> discord.ui.View:
    return _view(JobButton(Action.CANCEL, job_key))
