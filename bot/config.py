"""Settings from the environment and an optional ``.env`` in the working directory.

Every setting is documented in the README with its default. A missing or invalid value
raises :class:`ConfigError` naming the setting (and never echoing a secret).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

from bot.core import upstream_api as api
from bot.core.errors import ConfigError
from bot.core.pricing import PriceTable

T = TypeVar("T")

DEFAULT_DATABASE_URL = "sqlite:///data/sdbot.sqlite3"
DEFAULT_DISCORD_API_BASE_URL = "https://discord.com/api/v10"


@dataclass(frozen=True)
class Settings:
    discord_token: str | None = field(default=None, repr=False)
    segmind_api_key: str | None = field(default=None, repr=False)
    segmind_base_url: str = api.DEFAULT_BASE_URL
    database_url: str = DEFAULT_DATABASE_URL
    discord_api_base_url: str = DEFAULT_DISCORD_API_BASE_URL
    discord_gateway_url: str | None = None
    segmind_max_concurrency: int = 2
    segmind_requests_per_minute: int = api.FREE_PLAN_REQUESTS_PER_MINUTE
    max_jobs_per_user: int = 1
    max_queued_per_user: int = 3
    default_allowance: int = 0
    account_floor: Decimal = Decimal(0)
    log_channel_id: int | None = None
    data_dir: Path = Path("data")
    prices: PriceTable = field(default_factory=PriceTable)
    # Attachments are fetched only from these hosts (Discord's CDN): a URL pointing elsewhere
    # is never requested, so a forged interaction cannot make the bot fetch internal addresses.
    attachment_hosts: frozenset[str] = frozenset({"cdn.discordapp.com", "media.discordapp.net"})
    max_image_bytes: int = 20 * 2**20
    max_image_pixels: int = 40_000_000
    max_image_side: int = 8192
    upstream_timeout: float = 180.0
    upstream_connect_timeout: float = 10.0
    shutdown_grace: float = 8.0
    log_level: str = "INFO"

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file of ``DATABASE_URL`` (``sqlite:///relative`` or ``sqlite:////abs``)."""
        prefix = "sqlite:///"
        if not self.database_url.startswith(prefix):
            raise ConfigError("DATABASE_URL", "only sqlite:///PATH is supported in this version")
        return Path(self.database_url[len(prefix) :])

    def require_discord_token(self) -> str:
        if not self.discord_token:
            raise ConfigError(
                "DISCORD_TOKEN", "is not set (the bot token from the Developer Portal)"
            )
        return self.discord_token

    def require_api_key(self) -> str:
        if not self.segmind_api_key:
            raise ConfigError("SEGMIND_API_KEY", "is not set (your Segmind API key, SG_…)")
        return self.segmind_api_key


def _parse(name: str, raw: str, parser: Callable[[str], T], what: str) -> T:
    try:
        return parser(raw.strip())
    except (ValueError, InvalidOperation):
        raise ConfigError(name, f"must be {what}") from None


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError
    return value


def _non_negative_decimal(raw: str) -> Decimal:
    value = Decimal(raw)
    if not value.is_finite() or value < 0:
        raise ValueError
    return value


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError
    return value


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError
    return raw.rstrip("/")


def _ws_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError
    return raw


def _snowflake(raw: str) -> int:
    value = int(raw)
    if not 0 < value < 2**64:
        raise ValueError
    return value


def _hosts(raw: str) -> frozenset[str]:
    hosts = frozenset(h.strip().lower() for h in raw.split(",") if h.strip())
    if not hosts or any("/" in h or ":" in h for h in hosts):
        raise ValueError
    return hosts


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError
    return level


def _api_key(raw: str) -> str:
    if not api.API_KEY_PATTERN.fullmatch(raw):
        raise ValueError
    return raw


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Read settings; the process environment wins over ``.env``."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)

    def get(name: str, parser: Callable[[str], T], what: str, default: T) -> T:
        raw = values.get(name)
        if raw is None or raw.strip() == "":
            return default
        return _parse(name, raw, parser, what)

    d = Settings()
    p = d.prices
    prices = PriceTable(
        img2img_credits=get(
            "SDBOT_PRICE_IMG2IMG", _positive_int, "a whole number ≥ 1", p.img2img_credits
        ),
        outpaint_credits=get(
            "SDBOT_PRICE_OUTPAINT", _positive_int, "a whole number ≥ 1", p.outpaint_credits
        ),
        img2img_account=get(
            "SDBOT_ACCOUNT_COST_IMG2IMG", _non_negative_decimal, "a number ≥ 0", p.img2img_account
        ),
        outpaint_account=get(
            "SDBOT_ACCOUNT_COST_OUTPAINT", _non_negative_decimal, "a number ≥ 0", p.outpaint_account
        ),
        reference_steps=get(
            "SDBOT_PRICE_REFERENCE_STEPS", _positive_int, "a whole number ≥ 1", p.reference_steps
        ),
    )
    return Settings(
        discord_token=get("DISCORD_TOKEN", str, "text", None),
        segmind_api_key=get("SEGMIND_API_KEY", _api_key, "SG_ followed by 16 hex digits", None),
        segmind_base_url=get("SEGMIND_BASE_URL", _http_url, "an http(s) URL", d.segmind_base_url),
        database_url=get("DATABASE_URL", str, "a database URL", d.database_url),
        discord_api_base_url=get(
            "DISCORD_API_BASE_URL", _http_url, "an http(s) URL", d.discord_api_base_url
        ),
        discord_gateway_url=get("DISCORD_GATEWAY_URL", _ws_url, "a ws(s) URL", None),
        segmind_max_concurrency=get(
            "SEGMIND_MAX_CONCURRENCY",
            _positive_int,
            "a whole number ≥ 1",
            d.segmind_max_concurrency,
        ),
        segmind_requests_per_minute=get(
            "SEGMIND_REQUESTS_PER_MINUTE",
            _positive_int,
            "a whole number ≥ 1",
            d.segmind_requests_per_minute,
        ),
        max_jobs_per_user=get(
            "SDBOT_MAX_JOBS_PER_USER", _positive_int, "a whole number ≥ 1", d.max_jobs_per_user
        ),
        max_queued_per_user=get(
            "SDBOT_MAX_QUEUED_PER_USER", _positive_int, "a whole number ≥ 1", d.max_queued_per_user
        ),
        default_allowance=get(
            "SDBOT_DEFAULT_ALLOWANCE", _non_negative_int, "a whole number ≥ 0", d.default_allowance
        ),
        account_floor=get(
            "SDBOT_ACCOUNT_FLOOR", _non_negative_decimal, "a number ≥ 0", d.account_floor
        ),
        log_channel_id=get("SDBOT_LOG_CHANNEL_ID", _snowflake, "a Discord channel id", None),
        data_dir=get("SDBOT_DATA_DIR", Path, "a directory path", d.data_dir),
        prices=prices,
        attachment_hosts=get(
            "SDBOT_ATTACHMENT_HOSTS",
            _hosts,
            "comma-separated host names",
            d.attachment_hosts,
        ),
        max_image_bytes=get(
            "SDBOT_MAX_IMAGE_BYTES", _positive_int, "a whole number of bytes", d.max_image_bytes
        ),
        max_image_pixels=get(
            "SDBOT_MAX_IMAGE_PIXELS", _positive_int, "a whole number ≥ 1", d.max_image_pixels
        ),
        max_image_side=get(
            "SDBOT_MAX_IMAGE_SIDE", _positive_int, "a whole number ≥ 1", d.max_image_side
        ),
        upstream_timeout=get(
            "SDBOT_UPSTREAM_TIMEOUT", _positive_float, "a number of seconds > 0", d.upstream_timeout
        ),
        upstream_connect_timeout=get(
            "SDBOT_UPSTREAM_CONNECT_TIMEOUT",
            _positive_float,
            "a number of seconds > 0",
            d.upstream_connect_timeout,
        ),
        shutdown_grace=get(
            "SDBOT_SHUTDOWN_GRACE", _positive_float, "a number of seconds > 0", d.shutdown_grace
        ),
        log_level=get("SDBOT_LOG_LEVEL", _log_level, "DEBUG, INFO, WARNING or ERROR", d.log_level),
    )
