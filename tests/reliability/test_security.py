"""Secrets never leak, and SQL is only ever built with parameters."""

from __future__ import annotations

import ast
import asyncio
import io
import os
import signal
import sys
from pathlib import Path

from PIL import Image

from tests.standins.fake_discord import MANAGE_GUILD, FakeDiscord
from tests.standins.fake_segmind import FakeSegmind, Respond

ROOT = Path(__file__).resolve().parents[2]
FOLLOW_UP = "/webhooks/{webhook_id}/{webhook_token}"


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 20, 140)).save(out, "PNG")
    return out.getvalue()


async def test_no_secret_in_logs_at_debug_or_in_any_message(
    tmp_path: Path, fake: FakeDiscord
) -> None:
    guild = fake.add_guild("server")
    channel = guild.add_text_channel("images")
    alice = guild.add_member("alice")
    admin = guild.add_member("admin", permissions=MANAGE_GUILD)
    async with FakeSegmind() as api:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path),
            **fake.env,
            "SEGMIND_API_KEY": api.api_key,
            "SEGMIND_BASE_URL": api.base_url,
            "SEGMIND_REQUESTS_PER_MINUTE": "1000",
            "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
            "SDBOT_DATA_DIR": str(tmp_path / "data"),
            "SDBOT_ATTACHMENT_HOSTS": "127.0.0.1",
            "SDBOT_LOG_LEVEL": "DEBUG",  # discord.py logs payloads and webhook URLs at DEBUG
        }
        bot = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run", cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await fake.wait_until(lambda: fake.connected and fake.commands, within=30)
            await fake.slash(admin, channel, "quota", raw=True)  # unknown shape: an error path
            grant = await fake.slash(admin, channel, "quota grant", user=alice, amount=50)
            await fake.wait_until(lambda: grant.original)
            ok = await fake.slash(alice, channel, "img2img", image=("a.png", png()), prompt="x")
            await fake.wait_until(lambda: ok.followups or (ok.original and ok.original.attachments))
            api.inject(Respond(401, {"error": f"Invalid key {api.api_key}"}))
            denied = await fake.slash(alice, channel, "img2img", image=("a.png", png()), prompt="y")
            await fake.wait_until(lambda: denied.original and denied.original.embeds, within=10)
            fake.fail("POST", FOLLOW_UP, status=404, code=10062)
            bot.send_signal(signal.SIGTERM)
            out, err = await asyncio.wait_for(bot.communicate(), timeout=30)
        finally:
            if bot.returncode is None:  # a failed step must not leave a bot behind
                bot.kill()
                await bot.wait()
    log = (out + err).decode()
    assert "DEBUG" in log  # the level really was DEBUG
    secrets = [fake.token, api.api_key, *fake._token_of.values()]
    leaked = [s[:6] + "…" for s in secrets if s in log]
    assert not leaked, f"secrets in the bot's log: {leaked}"
    for messages in fake.messages.values():
        for message in messages:
            text = repr((message.content, message.embeds, message.components))
            assert not any(s in text for s in secrets)


# --- SQL only with parameters ------------------------------------------------------------------

SQL_CALLS = {"execute", "executemany", "executescript", "_execute"}


def string_built_sql(source: str) -> list[int]:
    """Lines where SQL passed to execute() is built by formatting instead of parameters."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if node.func.attr not in SQL_CALLS or not node.args:
            continue
        sql = node.args[0]
        formatted = isinstance(sql, ast.JoinedStr | ast.BinOp) or (
            isinstance(sql, ast.Call)
            and isinstance(sql.func, ast.Attribute)
            and sql.func.attr == "format"
        )
        if formatted:
            lines.append(node.lineno)
    return lines


def test_the_checker_catches_string_built_sql() -> None:
    bad = """
def debit(conn, user, amount):
    conn.execute(f"UPDATE accounts SET available = available - {amount} WHERE user_id = {user}")
    conn.execute("DELETE FROM jobs WHERE job_key = '%s'" % user)
    conn.execute("SELECT * FROM jobs WHERE user_id = {}".format(user))
    conn.execute("SELECT * FROM jobs WHERE user_id = ?", (user,))
"""
    assert string_built_sql(bad) == [3, 4, 5]


def test_no_sql_is_built_from_strings_in_the_bot() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in sorted((ROOT / "bot").rglob("*.py"))
        if (lines := string_built_sql(path.read_text()))
    }
    assert offenders == {}
