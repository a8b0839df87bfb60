"""Settings: defaults, .env loading, and a clear error naming any bad setting."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.core.errors import ConfigError

KEY = "SG_0123456789abcdef"


def test_defaults() -> None:
    s = load_settings({}, env_file=None)
    assert s.segmind_base_url == "https://api.segmind.com"
    assert s.database_url == "sqlite:///data/sdbot.sqlite3"
    assert s.sqlite_path == Path("data/sdbot.sqlite3")
    assert s.discord_api_base_url == "https://discord.com/api/v10"
    assert s.segmind_requests_per_minute == 5
    assert s.default_allowance == 0
    assert s.data_dir == Path("data")


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text(f"SEGMIND_API_KEY={KEY}\nSDBOT_DEFAULT_ALLOWANCE=10\nSDBOT_ACCOUNT_FLOOR=1.5\n")
    s = load_settings({"SDBOT_DEFAULT_ALLOWANCE": "20"}, env_file=env)
    assert s.segmind_api_key == KEY
    assert s.default_allowance == 20
    assert s.account_floor == Decimal("1.5")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SEGMIND_MAX_CONCURRENCY", "0"),
        ("SEGMIND_REQUESTS_PER_MINUTE", "lots"),
        ("SDBOT_DEFAULT_ALLOWANCE", "-1"),
        ("SDBOT_ACCOUNT_FLOOR", "NaN"),
        ("SEGMIND_BASE_URL", "ftp://x"),
        ("DISCORD_GATEWAY_URL", "http://not-a-websocket"),
        ("SDBOT_LOG_CHANNEL_ID", "general"),
        ("SDBOT_PRICE_IMG2IMG", "0"),
        ("SEGMIND_API_KEY", "Bearer abc"),
    ],
)
def test_invalid_setting_is_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({name: value}, env_file=None)
    assert caught.value.setting == name
    assert caught.value.user_message.startswith(name)


def test_invalid_key_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"SEGMIND_API_KEY": "SG_secretsecret"}, env_file=None)
    assert "secret" not in caught.value.user_message


def test_missing_required_settings_name_themselves() -> None:
    s = load_settings({}, env_file=None)
    with pytest.raises(ConfigError, match="DISCORD_TOKEN"):
        s.require_discord_token()
    with pytest.raises(ConfigError, match="SEGMIND_API_KEY"):
        s.require_api_key()


def test_secrets_are_not_in_repr() -> None:
    s = load_settings({"DISCORD_TOKEN": "tok.en.value", "SEGMIND_API_KEY": KEY}, env_file=None)
    assert "tok.en.value" not in repr(s) and KEY not in repr(s)


def test_only_sqlite_urls_for_now() -> None:
    s = load_settings({"DATABASE_URL": "postgresql://db/sdbot"}, env_file=None)
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        _ = s.sqlite_path
