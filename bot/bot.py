"""The discord.py Bot: opens the core's resources in ``setup_hook``, loads one cog per area,
and shuts down without losing jobs.

Start-up order (nothing is served before recovery has run):
database (migrated) → HTTP sessions → crash recovery → job workers → cogs → command sync →
gateway; then results a crash left undelivered are posted again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import discord
import yarl
from discord.ext import commands

from bot.config import Settings
from bot.core.jobs import JobService
from bot.core.ledger import Ledger, open_ledger
from bot.core.results import ResultStore
from bot.core.segmind import SegmindClient
from bot.delivery import Delivery
from bot.ui.errors import SdTree

log = logging.getLogger(__name__)

EXTENSIONS = ("bot.cogs.generate", "bot.cogs.credits", "bot.cogs.admin")
HEALTH_FILE = "health.json"
HEALTH_INTERVAL = 15.0


def point_discord_at(settings: Settings) -> None:
    """Honour DISCORD_API_BASE_URL / DISCORD_GATEWAY_URL (REST and gateway proxies).

    discord.py reads both from class attributes (``Route.BASE`` at each request, and the
    gateway's default when connecting), so they are process-wide.
    """
    discord.http.Route.BASE = settings.discord_api_base_url
    if settings.discord_gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


class SdBot(commands.Bot):
    ledger: Ledger
    jobs: JobService
    delivery: Delivery
    downloads: aiohttp.ClientSession

    def __init__(self, settings: Settings, *, sync_commands: bool = True, **options: Any) -> None:
        # Slash commands, components and modals need no intents; `guilds` keeps the
        # guild/channel cache that permission checks and channel fallbacks use.
        intents = discord.Intents.none()
        intents.guilds = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=SdTree,
            **options,
        )
        self.settings = settings
        self.sync_commands = sync_commands
        self.store = ResultStore(settings.data_dir)
        self.segmind = SegmindClient.from_settings(settings)
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False

    async def setup_hook(self) -> None:
        self.ledger = await open_ledger(self.settings)
        await self.segmind.start()
        self.downloads = aiohttp.ClientSession(trust_env=False)
        self.delivery = Delivery(self)
        self.jobs = JobService(
            ledger=self.ledger,
            client=self.segmind,
            store=self.store,
            prices=self.settings.prices,
            listener=self.delivery,
            workers=self.settings.segmind_max_concurrency,
            max_running_per_user=self.settings.max_jobs_per_user,
            max_queued_per_user=self.settings.max_queued_per_user,
        )
        report = await self.jobs.recover()
        self.jobs.start()
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        if self.sync_commands:
            await self.tree.sync()
        self.spawn(self.delivery.redeliver(report.undelivered), "redeliver")
        self.spawn(self._health_loop(), "health")

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run a background task that close() cancels."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def shutdown(self) -> None:
        """SIGTERM: stop taking commands, let running jobs finish within the grace period."""
        if self._closing:
            return
        self._closing = True
        log.info("shutting down: draining jobs for up to %.0f s", self.settings.shutdown_grace)
        if hasattr(self, "jobs"):
            await self.jobs.shutdown(self.settings.shutdown_grace)
        await self.close()

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await super().close()
        await self.segmind.close()
        if hasattr(self, "downloads"):
            await self.downloads.close()
        if hasattr(self, "ledger"):
            await self.ledger.close()

    async def _health_loop(self) -> None:
        path = self.settings.data_dir / HEALTH_FILE
        while True:
            write_health(path, ready=self.is_ready() and not self.is_closed())
            await asyncio.sleep(HEALTH_INTERVAL)


def write_health(path: Path, *, ready: bool) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"ready": ready, "at": time.time()}))
    tmp.replace(path)


def read_health(path: Path, max_age: float = 4 * HEALTH_INTERVAL) -> bool:
    """True when the bot wrote a fresh, ready heartbeat (``sdbot health`` for Docker)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return bool(data.get("ready")) and time.time() - float(data.get("at", 0)) < max_age
