"""The whole bot over the wire: the real SdBot (discord.py, aiohttp, SQLite on disk) against the
loopback Discord and Segmind stand-ins. The ``world`` fixture (tests/conftest.py) builds one."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from bot.bot import SdBot
from bot.config import Settings, load_settings
from bot.core.ledger import JobRecord, JobStatus
from tests.standins.fake_discord import (
    Channel,
    FakeDiscord,
    Guild,
    Interaction,
    Member,
    Message,
)
from tests.standins.fake_segmind import FakeSegmind

START_CREDITS = 100


def png(size: tuple[int, int] = (640, 480), colour: tuple[int, int, int] = (30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


@dataclass
class World:
    discord: FakeDiscord
    segmind: FakeSegmind
    settings: Settings
    guild: Guild
    channel: Channel
    log_channel: Channel
    alice: Member
    bob: Member
    admin: Member
    bot: SdBot

    @property
    def gid(self) -> int:
        return self.guild.id

    async def balance(self, member: Member) -> tuple[int, int, int]:
        b = await self.bot.ledger.balance(self.gid, member.user.id)
        return b.available, b.held, b.spent

    def results(self) -> list[Message]:
        """Public messages with an image: results posted in the channel."""
        return [
            m
            for m in self.channel.messages
            if not m.ephemeral and not m.deleted and m.attachments and m.embeds
        ]

    async def result_for(self, it: Interaction, within: float = 10) -> Message:
        """The public result of ``it`` (its buttons carry the job's id)."""

        def find() -> Message | None:
            for message in self.results():
                if any(cid.endswith(f":{it.id}") for cid in message.custom_ids):
                    return message
            return None

        return await self.discord.wait_until(find, within=within)

    async def job(self, it: Interaction) -> JobRecord | None:
        return await self.bot.ledger.job(str(it.id))

    async def until_status(
        self, it: Interaction, *statuses: JobStatus, within: float = 10
    ) -> JobRecord:
        async def reached() -> JobRecord:
            while True:
                job = await self.job(it)
                if job is not None and job.status in statuses:
                    return job
                await asyncio.sleep(0.02)

        return await asyncio.wait_for(reached(), within)

    async def ephemeral_text(self, it: Interaction, needle: str, within: float = 10) -> str:
        """Wait until the member's ephemeral reply mentions ``needle``; return its text."""

        def text() -> str | None:
            message = it.original
            if message is None:
                return None
            parts = [message.content] + [
                " ".join(str(e.get(k, "")) for k in ("title", "description"))
                for e in message.embeds
            ]
            joined = " ".join(parts)
            return joined if needle.lower() in joined.lower() else None

        return await self.discord.wait_until(text, within=within)


def settings_for(
    tmp_path: Path, discord: FakeDiscord, segmind: FakeSegmind, **extra: str
) -> Settings:
    env = {
        **discord.env,
        "SEGMIND_API_KEY": segmind.api_key,
        "SEGMIND_BASE_URL": segmind.base_url,
        "SEGMIND_REQUESTS_PER_MINUTE": "1000",
        "SEGMIND_MAX_CONCURRENCY": "4",
        "SDBOT_MAX_QUEUED_PER_USER": "5",
        "DATABASE_URL": f"sqlite:///{tmp_path}/sdbot.sqlite3",
        "SDBOT_DATA_DIR": str(tmp_path / "data"),
        "SDBOT_UPSTREAM_TIMEOUT": "5",
        "SDBOT_SHUTDOWN_GRACE": "2",
        "SDBOT_ATTACHMENT_HOSTS": "127.0.0.1",  # the stand-in's CDN
        **extra,
    }
    return load_settings(env, env_file=None)


@asynccontextmanager
async def running_bot(settings: Settings, discord: FakeDiscord) -> AsyncIterator[SdBot]:
    bot = SdBot(settings, guild_ready_timeout=0.05)
    async with discord.run_bot(bot):
        yield bot
        await bot.shutdown()
