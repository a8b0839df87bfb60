"""Telling members how their jobs go, and posting results so that none is ever lost.

Implements the core's ``JobListener``. While the interaction token is alive (15 minutes) the
member's ephemeral queue message is kept up to date and the result is posted as a public
follow-up; after that, or when a follow-up fails, the result goes to the channel as a normal
message. A result that cannot be posted at all stays "succeeded, not delivered" in the ledger:
it is retried periodically, at start-up, and offered in ``/credits``.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

import discord

from bot.core.errors import (
    SdbotError,
    UpstreamOutcomeUnknown,
    UpstreamRateLimited,
    UpstreamUnreachable,
)
from bot.core.images import check_result_async, fit_for_upload_async
from bot.core.ledger import AccountState, JobRecord
from bot.core.params import JobParams, params_from_dict
from bot.core.results import StoredImage
from bot.ui import embeds
from bot.ui.views import cancel_view, result_view, retry_view

if TYPE_CHECKING:
    from bot.bot import SdBot

log = logging.getLogger(__name__)

# Interaction tokens live 15 minutes; stop using one a little before that.
TOKEN_LIFETIME = timedelta(minutes=14)
DEFAULT_UPLOAD_LIMIT = 10 * 2**20
REFRESH_INTERVAL = 1.0  # at most one edit per queue message per second
# Queue-message edits in flight at once. Without a bound, 200 queued jobs meant 200 edits
# started in one event-loop iteration (~1 ms of discord.py/aiohttp work each) every time
# the queue moved: a 100+ ms stall in which no member's command was acknowledged.
REFRESH_CONCURRENCY = 4
REDELIVER_INTERVAL = 300.0
SHRINK_ATTEMPTS = 3  # re-encode under half the size after each 413

View = discord.ui.View
Send = Callable[[discord.Embed, list[discord.File], View], Awaitable[None]]


@dataclass
class Tracked:
    """A queued or running job whose member is still looking at its ephemeral message."""

    interaction: discord.Interaction
    params: JobParams
    cost: int
    position: int | None
    running: bool = False
    shown: tuple[int | None, bool] | None = field(default=None)


def _token_alive(interaction: discord.Interaction) -> bool:
    return discord.utils.utcnow() - interaction.created_at < TOKEN_LIFETIME


def _offers_retry(error: SdbotError) -> bool:
    return isinstance(error, UpstreamOutcomeUnknown | UpstreamRateLimited | UpstreamUnreachable)


class Delivery:
    def __init__(self, bot: SdBot) -> None:
        self.bot = bot
        self._tracked: dict[str, Tracked] = {}
        self._dirty = asyncio.Event()
        bot.spawn(self._refresh_loop(), "queue-refresh")

    # --- queue messages -------------------------------------------------------------------

    def track(
        self, job_key: str, interaction: discord.Interaction, params: JobParams, cost: int
    ) -> None:
        # Called before the job is queued: on_positions fills in its position.
        self._tracked[job_key] = Tracked(interaction, params, cost, position=None)

    def forget(self, job_key: str) -> None:
        self._tracked.pop(job_key, None)

    async def show(self, job_key: str) -> None:
        """Show the queue message now (later changes come from the refresh loop)."""
        tracked = self._tracked.get(job_key)
        if tracked is not None:  # None: the job already finished and said so
            await self._refresh(job_key, tracked)

    async def on_positions(self, positions: dict[str, int]) -> None:
        for key, tracked in self._tracked.items():
            tracked.position = positions.get(key)
        self._dirty.set()

    async def on_started(self, job_key: str) -> None:
        tracked = self._tracked.get(job_key)
        if tracked:
            tracked.running = True
            self._dirty.set()

    async def _refresh_loop(self) -> None:
        slots = asyncio.Semaphore(REFRESH_CONCURRENCY)

        async def refresh(job_key: str, tracked: Tracked) -> None:
            async with slots:
                await self._refresh(job_key, tracked)

        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await asyncio.gather(*(refresh(k, t) for k, t in list(self._tracked.items())))
            await asyncio.sleep(REFRESH_INTERVAL)

    async def _refresh(self, job_key: str, tracked: Tracked) -> None:
        state = (tracked.position, tracked.running)
        if state == tracked.shown or not _token_alive(tracked.interaction):
            return
        tracked.shown = state
        embed = embeds.queued(tracked.params, tracked.cost, tracked.position, tracked.running)
        view = None if tracked.running else cancel_view(job_key)
        await self._edit_original(tracked.interaction, embed=embed, view=view)

    # --- outcomes -------------------------------------------------------------------------

    async def on_result(self, job: JobRecord, images: list[StoredImage]) -> bool:
        tracked = self._tracked.pop(job.job_key, None)
        interaction = tracked.interaction if tracked else None
        delivered = await self.post_result(job, images, interaction)
        if interaction is not None and _token_alive(interaction):
            text = (
                "Done: your result is posted in the channel."
                if delivered
                else (
                    "Your image is ready but could not be posted yet; it is kept and will be "
                    "posted again (or use `/credits`)."
                )
            )
            await self._edit_original(interaction, content=text, embed=None, view=None)
        return delivered

    async def on_failed(self, job_key: str, error: SdbotError) -> None:
        tracked = self._tracked.pop(job_key, None)
        if tracked is None or not _token_alive(tracked.interaction):
            return  # the member sees it in /credits' job list
        view = retry_view(job_key) if _offers_retry(error) else None
        await self._edit_original(
            tracked.interaction, content=None, embed=embeds.failure(error.user_message), view=view
        )

    async def on_paused(self, state: AccountState) -> None:
        log.warning("generation paused: %s", state.pause_reason)
        channel_id = self.bot.settings.log_channel_id
        if channel_id is None:
            return
        text = (
            f"⚠️ Image generation is paused: {state.pause_reason}. Members are told and "
            "nothing is charged. Fix the cause, then run `/quota resume`."
        )
        try:
            await self.bot.get_partial_messageable(channel_id).send(text)
        except discord.HTTPException as error:
            log.error("could not notify the log channel: %s", error)

    # --- results --------------------------------------------------------------------------

    async def post_result(
        self,
        job: JobRecord,
        images: list[StoredImage],
        interaction: discord.Interaction | None = None,
    ) -> bool:
        """Post a result publicly: follow-up while the token lives, else a channel message.

        A 413 (the file is over the server's upload limit) retries the same route with the
        images re-encoded under half the size; any other failure moves on to the next route.
        """
        params = params_from_dict(job.params)
        balance = await self.bot.ledger.balance(job.guild_id, job.user_id)
        view = result_view(job.job_key)
        limit = interaction.filesize_limit if interaction else DEFAULT_UPLOAD_LIMIT
        for route, send in self._routes(job, interaction):
            for _ in range(SHRINK_ATTEMPTS):
                files = await _files(images, limit)
                embed = embeds.result(
                    params,
                    requester_id=job.user_id,
                    cost=job.cost,
                    balance_left=balance.available,
                    image_filename=files[0].filename if files else None,
                )
                try:
                    await send(embed, files, view)
                    return True
                except discord.HTTPException as error:
                    log.warning("posting job %s by %s failed: %s", job.job_key, route, error)
                    if error.status != 413:
                        break
                    limit = min(limit, max(len(i.data) for i in images)) // 2
        return False

    def _routes(
        self, job: JobRecord, interaction: discord.Interaction | None
    ) -> list[tuple[str, Send]]:
        routes: list[tuple[str, Send]] = []
        if interaction is not None and _token_alive(interaction):

            async def follow_up(
                embed: discord.Embed, files: list[discord.File], view: View
            ) -> None:
                await interaction.followup.send(embed=embed, files=files, view=view, wait=True)

            routes.append(("follow-up", follow_up))
        if job.channel_id is not None:
            channel = self.bot.get_partial_messageable(job.channel_id)

            async def channel_message(
                embed: discord.Embed, files: list[discord.File], view: View
            ) -> None:
                await channel.send(embed=embed, files=files, view=view)

            routes.append(("channel message", channel_message))
        return routes

    async def redeliver(self, jobs: list[JobRecord]) -> None:
        """Post results that were produced but never delivered; then keep retrying."""
        while True:
            for job in jobs:
                if self.bot.jobs.is_running(job.job_key):
                    continue  # its worker is posting it right now
                images = await asyncio.to_thread(self.bot.store.load_result, job.job_key)
                if images and await self.post_result(job, images):
                    await self.bot.ledger.mark_delivered(job.job_key)
            await asyncio.sleep(REDELIVER_INTERVAL)
            jobs = await self.bot.ledger.undelivered()

    # --- helpers --------------------------------------------------------------------------

    async def _edit_original(
        self,
        interaction: discord.Interaction,
        *,
        content: str | None = None,
        embed: discord.Embed | None = None,
        view: discord.ui.View | None = None,
    ) -> None:
        try:
            await interaction.edit_original_response(content=content, embed=embed, view=view)
        except discord.HTTPException as error:
            log.info("could not update a queue message: %s", error)


async def _files(images: list[StoredImage], limit: int) -> list[discord.File]:
    files = []
    for image in images:
        data, name = image.data, image.filename
        if len(data) > limit:
            fitted = await fit_for_upload_async(await check_result_async(data), limit)
            data, name = fitted.data, f"{name.rsplit('.', 1)[0]}.{fitted.extension}"
        files.append(discord.File(io.BytesIO(data), filename=name))
    return files
