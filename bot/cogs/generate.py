"""/img2img, /outpaint, the "Img2img"/"Outpaint" message menus, and the result buttons.

Every entry point defers first (ephemerally, within Discord's 3 seconds), then fetches and
checks the image, validates the options, and hands a job to the core's JobService. Errors
about a member's own command are shown in that ephemeral message; results are public.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import discord
import yarl
from discord import app_commands
from discord.ext import commands

from bot.core import upstream_api as api
from bot.core.download import download_capped
from bot.core.errors import (
    GenerationPaused,
    ImageTooLarge,
    NoImageAttached,
    SdbotError,
    UntrustedImageSource,
    UserBlocked,
)
from bot.core.images import ImageLimits
from bot.core.jobs import JobRequest, prepare
from bot.core.ledger import JobStatus
from bot.core.params import (
    Img2ImgParams,
    JobParams,
    OutpaintParams,
    Size,
    format_size,
    img2img_params,
    outpaint_params,
    params_from_dict,
)
from bot.core.presets import Direction
from bot.ui import embeds, errors
from bot.ui.views import Action, JobButton

if TYPE_CHECKING:
    from bot.bot import SdBot

log = logging.getLogger(__name__)

MakeParams = Callable[[Size], JobParams]
FetchImage = Callable[[], Awaitable[bytes]]

SCHEDULERS = [app_commands.Choice(name=s, value=s) for s in api.SCHEDULERS]
SIZES = [app_commands.Choice(name=format_size(s), value=format_size(s)) for s in api.IMG2IMG_SIZES]
CANVASES = [
    app_commands.Choice(name=format_size(s), value=format_size(s)) for s in api.OUTPAINT_CANVASES
]
DIRECTIONS = [app_commands.Choice(name=d.label, value=d.value) for d in Direction]
# Members' images being downloaded or prepared at once (the image pool has 2-4 threads).
INTAKE_SLOTS = 4
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif")

PromptText = app_commands.Range[str, 1, api.PROMPT_MAX_CHARS]
NegativeText = app_commands.Range[str, 0, api.PROMPT_MAX_CHARS]
Seed = app_commands.Range[int, 0, int(api.SEED_RANGE.high)]
Guidance = app_commands.Range[
    float, float(api.IMG2IMG_GUIDANCE.low), float(api.IMG2IMG_GUIDANCE.high)
]
Strength = app_commands.Range[
    float, float(api.IMG2IMG_STRENGTH.low), float(api.IMG2IMG_STRENGTH.high)
]
Img2ImgSteps = app_commands.Range[int, int(api.IMG2IMG_STEPS.low), int(api.IMG2IMG_STEPS.high)]
OutpaintSteps = app_commands.Range[int, int(api.OUTPAINT_STEPS.low), int(api.OUTPAINT_STEPS.high)]
Samples = app_commands.Range[int, int(api.IMG2IMG_SAMPLES.low), int(api.IMG2IMG_SAMPLES.high)]
Offset = app_commands.Range[int, int(api.OUTPAINT_OFFSET.low), int(api.OUTPAINT_OFFSET.high)]
Scale = app_commands.Range[float, float(api.OUTPAINT_SCALE.low), float(api.OUTPAINT_SCALE.high)]
MaskExpand = app_commands.Range[
    int, int(api.OUTPAINT_MASK_EXPAND.low), int(api.OUTPAINT_MASK_EXPAND.high)
]


def _new_seed() -> int:
    return secrets.randbelow(int(api.SEED_RANGE.high) + 1)


def _image_attachment(message: discord.Message) -> discord.Attachment | None:
    for attachment in message.attachments:
        content_type = attachment.content_type or ""
        if content_type.startswith("image/") or attachment.filename.lower().endswith(
            IMAGE_EXTENSIONS
        ):
            return attachment
    return None


class PromptModal(discord.ui.Modal):
    prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="Prompt", style=discord.TextStyle.paragraph, max_length=api.PROMPT_MAX_CHARS
    )
    negative_prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
        label="Negative prompt (optional)",
        style=discord.TextStyle.paragraph,
        required=False,
        max_length=api.PROMPT_MAX_CHARS,
    )

    def __init__(
        self, cog: Generation, kind: Literal["img2img", "outpaint"], image: discord.Attachment
    ) -> None:
        super().__init__(title="Img2img" if kind == "img2img" else "Outpaint")
        self.cog, self.kind, self.image = cog, kind, image

    async def on_submit(self, interaction: discord.Interaction) -> None:
        prompt, negative = self.prompt.value, self.negative_prompt.value or None
        if self.kind == "img2img":
            make: MakeParams = lambda size: img2img_params(  # noqa: E731
                prompt=prompt, negative_prompt=negative, input_size=size
            )
        else:
            make = lambda size: outpaint_params(  # noqa: E731
                prompt=prompt, negative_prompt=negative, input_size=size
            )
        await self.cog.start_job(interaction, self.cog.attachment_fetcher(self.image), make)

    async def on_error(  # type: ignore[override]  # discord.py stubs it as BaseView's
        self, interaction: discord.Interaction, error: Exception, /
    ) -> None:
        await errors.report(interaction, error)


class Generation(commands.Cog):
    def __init__(self, bot: SdBot) -> None:
        self._intake = asyncio.Semaphore(INTAKE_SLOTS)
        self.bot = bot
        self.limits = ImageLimits(
            max_bytes=bot.settings.max_image_bytes,
            max_pixels=bot.settings.max_image_pixels,
            max_side=bot.settings.max_image_side,
        )
        self.attachment_hosts = bot.settings.attachment_hosts
        self._menus = (
            app_commands.ContextMenu(name="Img2img", callback=self.menu_img2img),
            app_commands.ContextMenu(name="Outpaint", callback=self.menu_outpaint),
        )
        for menu in self._menus:
            menu.guild_only = True

    async def cog_load(self) -> None:
        for menu in self._menus:
            self.bot.tree.add_command(menu)
        self.bot.add_dynamic_items(JobButton)

    async def cog_unload(self) -> None:
        for menu in self._menus:
            self.bot.tree.remove_command(menu.name, type=menu.type)
        self.bot.remove_dynamic_items(JobButton)

    # --- slash commands -------------------------------------------------------------------

    @app_commands.command(name="img2img", description="Transform an image with a text prompt")
    @app_commands.guild_only()
    @app_commands.describe(
        image="The image to transform (PNG, JPEG, WebP or still GIF)",
        prompt="What the result should show",
        negative_prompt="What to avoid",
        strength="How far from the original to go (0.1 to 1; default 0.75)",
        steps="Denoising steps (20 to 100; default 25; more costs more)",
        guidance="How closely to follow the prompt (0.1 to 25; default 7.5)",
        scheduler="Sampler (default DDIM)",
        seed="Seed for a repeatable result (default random; the seed used is shown)",
        samples="How many images (1 to 4; each one costs)",
        size="Output size (default: the one closest to your image's shape)",
    )
    @app_commands.choices(scheduler=SCHEDULERS, size=SIZES)
    async def img2img(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: PromptText,
        negative_prompt: NegativeText | None = None,
        strength: Strength | None = None,
        steps: Img2ImgSteps | None = None,
        guidance: Guidance | None = None,
        scheduler: str | None = None,
        seed: Seed | None = None,
        samples: Samples | None = None,
        size: str | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "strength": strength,
            "steps": steps,
            "guidance": guidance,
            "scheduler": scheduler,
            "seed": seed,
            "samples": samples,
            "size": size,
        }
        await self.start_job(
            interaction,
            self.attachment_fetcher(image),
            lambda input_size: img2img_params(input_size=input_size, **options),
        )

    @app_commands.command(name="outpaint", description="Extend an image beyond its borders")
    @app_commands.guild_only()
    @app_commands.describe(
        image="The image to extend (PNG, JPEG, WebP or still GIF)",
        prompt="What the extended picture should show",
        negative_prompt="What to avoid",
        direction="Where to add picture (default: zoom out on all sides)",
        canvas="Canvas size (default: chosen from the image and direction)",
        offset_x="Custom only: left edge of the original on the canvas (pixels)",
        offset_y="Custom only: top edge of the original on the canvas (pixels)",
        scale="Custom only: size of the original on the canvas (1 = fitted to the canvas)",
        mask_expand="How far the repainted area reaches into the original (0 to 256; default 8)",
        steps="Denoising steps (25 to 100; default 25; more costs more)",
        guidance="How closely to follow the prompt (0.1 to 25; default 7.5)",
        strength="How much the new area may vary (0.1 to 1; default 1)",
        scheduler="Sampler (default DDIM)",
        seed="Seed for a repeatable result (default random; the seed used is shown)",
    )
    @app_commands.choices(direction=DIRECTIONS, canvas=CANVASES, scheduler=SCHEDULERS)
    async def outpaint(
        self,
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: PromptText,
        negative_prompt: NegativeText | None = None,
        direction: str | None = None,
        canvas: str | None = None,
        offset_x: Offset | None = None,
        offset_y: Offset | None = None,
        scale: Scale | None = None,
        mask_expand: MaskExpand | None = None,
        steps: OutpaintSteps | None = None,
        guidance: Guidance | None = None,
        strength: Strength | None = None,
        scheduler: str | None = None,
        seed: Seed | None = None,
    ) -> None:
        options: dict[str, Any] = {
            "prompt": prompt,
            "negative_prompt": negative_prompt,
            "direction": direction,
            "canvas": canvas,
            "offset_x": offset_x,
            "offset_y": offset_y,
            "scale": scale,
            "mask_expand": mask_expand,
            "steps": steps,
            "guidance": guidance,
            "strength": strength,
            "scheduler": scheduler,
            "seed": seed,
        }
        await self.start_job(
            interaction,
            self.attachment_fetcher(image),
            lambda input_size: outpaint_params(input_size=input_size, **options),
        )

    # --- message context menus ------------------------------------------------------------

    async def menu_img2img(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        await self._open_modal(interaction, message, "img2img")

    async def menu_outpaint(
        self, interaction: discord.Interaction, message: discord.Message
    ) -> None:
        await self._open_modal(interaction, message, "outpaint")

    async def _open_modal(
        self,
        interaction: discord.Interaction,
        message: discord.Message,
        kind: Literal["img2img", "outpaint"],
    ) -> None:
        attachment = _image_attachment(message)
        if attachment is None:
            raise NoImageAttached()  # the tree's error handler answers, ephemerally
        await interaction.response.send_modal(PromptModal(self, kind, attachment))

    # --- buttons --------------------------------------------------------------------------

    async def on_button(
        self, interaction: discord.Interaction, action: Action, job_key: str
    ) -> None:
        job = await self.bot.ledger.job(job_key)
        if job is None:
            await interaction.response.send_message(
                embed=embeds.failure("That job is no longer known to the bot."), ephemeral=True
            )
            return
        if action is Action.DELETE:
            await self._delete(interaction, job.user_id)
        elif action is Action.CANCEL:
            await self._cancel(interaction, job_key, job.user_id, job.cost)
        else:
            await self._follow_up_job(interaction, action, job_key, params_from_dict(job.params))

    async def _delete(self, interaction: discord.Interaction, requester: int) -> None:
        if interaction.user.id != requester and not interaction.permissions.manage_messages:
            await interaction.response.send_message(
                embed=embeds.failure(
                    "Only the member who asked for this image, or someone with Manage Messages, "
                    "can delete it."
                ),
                ephemeral=True,
            )
            return
        await interaction.response.defer()
        await interaction.delete_original_response()

    async def _cancel(
        self, interaction: discord.Interaction, job_key: str, requester: int, cost: int
    ) -> None:
        if interaction.user.id != requester:
            await interaction.response.send_message(
                embed=embeds.failure("Only the member who queued this job can cancel it."),
                ephemeral=True,
            )
            return
        if await self.bot.jobs.cancel(job_key):
            self.bot.delivery.forget(job_key)  # its queue message must not come back
            text = f"Cancelled. The {cost} credits held for it were released."
        else:
            job = await self.bot.ledger.job(job_key)
            if job is not None and job.status in (JobStatus.FAILED, JobStatus.CANCELLED):
                text = f"This job was already stopped; its {cost} credits were released."
            else:
                text = "Too late to cancel: the job has already started or finished."
        await interaction.response.edit_message(content=text, embed=None, view=None)

    async def _follow_up_job(
        self, interaction: discord.Interaction, action: Action, job_key: str, old: JobParams
    ) -> None:
        store = self.bot.store
        if action in (Action.REROLL, Action.RETRY):
            fetch = self._stored(lambda: store.load_input(job_key))
            seed = old.seed if action is Action.RETRY else _new_seed()
            make: MakeParams = lambda _size: dataclasses.replace(old, seed=seed)  # noqa: E731
        else:
            fetch = self._stored(lambda: _first(store.load_result(job_key)))
            make = _vary(old) if action is Action.VARY else _zoom_out(old)
        await self.start_job(interaction, fetch, make)

    # --- the shared path ------------------------------------------------------------------

    def attachment_fetcher(self, attachment: discord.Attachment) -> FetchImage:
        async def fetch() -> bytes:
            url = yarl.URL(attachment.url)
            if url.scheme not in ("https", "http") or url.host not in self.attachment_hosts:
                raise UntrustedImageSource()
            if attachment.size > self.limits.max_bytes:
                raise ImageTooLarge(self.limits.max_bytes)
            return await download_capped(
                self.bot.downloads,
                attachment.url,
                self.limits.max_bytes,
                declared_size=attachment.size,
            )

        return fetch

    def _stored(self, load: Callable[[], bytes | None]) -> FetchImage:
        async def fetch() -> bytes:
            data = await asyncio.to_thread(load)
            if data is None:
                raise SdbotError("The image for that job is no longer kept by the bot.")
            return data

        return fetch

    async def start_job(
        self, interaction: discord.Interaction, fetch: FetchImage, make: MakeParams
    ) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        delivery = self.bot.delivery
        try:
            request = await self._request(interaction, fetch, make)
            # Tracked before it is queued, so no update from a fast job is missed.
            cost = self.bot.jobs.cost(request.params).credits
            delivery.track(request.job_key, interaction, request.params, cost)
            accepted = await self.bot.jobs.submit(request)
        except SdbotError as error:
            delivery.forget(str(interaction.id))
            await interaction.edit_original_response(embed=embeds.failure(error.user_message))
            return
        if accepted.duplicate:
            return  # the same interaction delivered twice: the first delivery owns the job
        await delivery.show(request.job_key)

    async def _request(
        self, interaction: discord.Interaction, fetch: FetchImage, make: MakeParams
    ) -> JobRequest:
        guild_id = interaction.guild_id
        assert guild_id is not None  # every entry point is guild_only
        make((512, 512))  # refuse bad options before downloading anything
        await self._precheck(guild_id, interaction.user.id)
        # A downloaded file waits in memory until an image thread is free: cap how many do.
        async with self._intake:
            params, image = await prepare(await fetch(), self.limits, make)
        roles = getattr(interaction.user, "roles", [])
        return JobRequest(
            job_key=str(interaction.id),
            guild_id=guild_id,
            user_id=interaction.user.id,
            channel_id=interaction.channel_id,
            role_ids=tuple(role.id for role in roles),
            params=params,
            image=image,
        )

    async def _precheck(self, guild_id: int, user_id: int) -> None:
        """Cheap refusals before downloading; ``hold`` checks again atomically."""
        balance = await self.bot.ledger.balance(guild_id, user_id)
        if balance.blocked:
            raise UserBlocked(balance.blocked_reason)
        state = await self.bot.ledger.account_state()
        if state.paused:
            raise GenerationPaused(state.pause_reason or "an admin paused it")


def _first(images: list[Any]) -> bytes | None:
    return images[0].data if images else None


def _vary(old: JobParams) -> MakeParams:
    def make(size: Size) -> JobParams:
        return img2img_params(
            prompt=old.prompt,
            negative_prompt=old.negative_prompt,
            input_size=size,
            scheduler=old.scheduler,
            steps=old.steps if isinstance(old, Img2ImgParams) else None,
            guidance=old.guidance,
        )

    return make


def _zoom_out(old: JobParams) -> MakeParams:
    def make(size: Size) -> JobParams:
        return outpaint_params(
            prompt=old.prompt,
            negative_prompt=old.negative_prompt,
            input_size=size,
            direction=Direction.ZOOM_OUT.value,
            scheduler=old.scheduler,
            steps=old.steps if isinstance(old, OutpaintParams) else None,
            guidance=old.guidance,
        )

    return make


async def setup(bot: SdBot) -> None:
    await bot.add_cog(Generation(bot))
