"""``sdbot run`` (also ``python -m bot``), ``migrate``, ``doctor`` and ``health``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sqlite3
from typing import Any

import discord

from bot.config import Settings, load_settings
from bot.core.errors import ConfigError, SdbotError
from bot.core.ledger.migrate import migrate
from bot.core.segmind import SegmindClient
from bot.logs import setup_logging


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    run = subparsers.add_parser(
        "run",
        help="start the bot",
        description=(
            "Apply pending migrations, connect to Discord and serve commands. Needs "
            "DISCORD_TOKEN and SEGMIND_API_KEY. SIGTERM or Ctrl-C stops taking commands, lets "
            "running jobs finish within SDBOT_SHUTDOWN_GRACE seconds and exits 0."
        ),
    )
    run.set_defaults(func=run_bot)

    migrate_parser = subparsers.add_parser(
        "migrate",
        help="apply the database migrations",
        description=(
            "Apply pending migrations (migrations/NNNN_*.sql) to the DATABASE_URL database, "
            "each in one transaction, and print the schema version. Safe while the bot runs; "
            "`sdbot run` does the same at start-up."
        ),
    )
    migrate_parser.set_defaults(func=run_migrate)

    doctor = subparsers.add_parser(
        "doctor",
        help="check the configuration, the database and the API key",
        description=(
            "Check every setting, open and check the database, and ask the image API whether "
            "the key and URL work (a request it rejects before generating: nothing is billed). "
            "Exits non-zero when anything fails."
        ),
    )
    doctor.set_defaults(func=run_doctor)

    health = subparsers.add_parser(
        "health",
        help="exit 0 when a running bot reported itself healthy (Docker HEALTHCHECK)",
    )
    health.set_defaults(func=run_health)


def run_migrate(args: argparse.Namespace) -> int:
    path = load_settings().sqlite_path
    version = migrate(path)
    print(f"{path}: schema version {version}")
    return 0


def run_bot(args: argparse.Namespace) -> int:
    settings = load_settings()
    token = settings.require_discord_token()
    key = settings.require_api_key()
    setup_logging(settings.log_level, secrets=[token, key])
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    migrate(settings.sqlite_path)
    return asyncio.run(serve(settings, token))


async def serve(settings: Settings, token: str) -> int:
    """Run until Discord closes the connection or SIGTERM/SIGINT arrives."""
    from bot.bot import SdBot, point_discord_at

    point_discord_at(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bot = SdBot(settings)
    async with bot:
        runner = asyncio.create_task(bot.start(token), name="discord")
        stopper = asyncio.create_task(stop.wait(), name="signals")
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        await bot.shutdown()
        stopper.cancel()
        if runner in done:
            try:
                runner.result()
            except discord.LoginFailure:
                raise ConfigError("DISCORD_TOKEN", "was refused by Discord") from None
        else:
            runner.cancel()
    return 0


def run_doctor(args: argparse.Namespace) -> int:
    return asyncio.run(_doctor())


async def _doctor() -> int:
    failures = 0

    def report(ok: bool, what: str) -> None:
        nonlocal failures
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}")

    try:
        settings = load_settings()
    except ConfigError as error:
        report(False, f"settings: {error.user_message}")
        return 1
    report(True, "settings parse")
    report(bool(settings.discord_token), "DISCORD_TOKEN is set")
    try:
        version = migrate(settings.sqlite_path)
        report(True, f"database {settings.sqlite_path}: schema version {version}")
    except (SdbotError, sqlite3.Error, OSError) as error:
        report(False, f"database {settings.sqlite_path}: {error}")
    try:
        async with SegmindClient.from_settings(settings) as client:
            remaining = await client.check_key()
        report(True, f"image API key works (account balance: {remaining})")
    except SdbotError as error:
        report(False, f"image API: {error.user_message}")
    return 1 if failures else 0


def run_health(args: argparse.Namespace) -> int:
    from bot.bot import HEALTH_FILE, read_health

    return 0 if read_health(load_settings().data_dir / HEALTH_FILE) else 1
