"""``sdbot run``, ``doctor``, ``img2img`` and ``outpaint`` as real subprocesses, against the
loopback stand-ins (the test's event loop serves them while the process runs)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
from pathlib import Path

from PIL import Image

from bot.core.ledger.sqlite import SqliteLedger
from tests.standins.fake_discord import FakeDiscord
from tests.standins.fake_segmind import FakeSegmind, Respond


def png(size: tuple[int, int] = (640, 480)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (20, 160, 90)).save(out, "PNG")
    return out.getvalue()


def environment(tmp_path: Path, **settings: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
        "SDBOT_DATA_DIR": str(tmp_path / "data"),
        "SDBOT_ATTACHMENT_HOSTS": "127.0.0.1",
        **settings,
    }


async def start(tmp_path: Path, env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", *args,
        cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def sdbot(tmp_path: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await start(tmp_path, env, *args)
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_img2img_writes_the_image_and_prints_seed_cost_and_credits(tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    async with FakeSegmind() as api:
        env = environment(tmp_path, SEGMIND_API_KEY=api.api_key, SEGMIND_BASE_URL=api.base_url)
        code, out, err = await sdbot(
            tmp_path, env, "img2img", "--image", "in.png", "--prompt", "a fern",
            "--out", "out", "--seed", "5", "--samples", "2",
        )  # fmt: skip
        assert code == 0, err
        assert "seed: 5" in out and "cost: 12 credits" in out
        assert f"remaining account credits: {api.balance}" in out
    files = sorted((tmp_path / "out").iterdir())
    assert [f.name for f in files] == ["img2img-5-0.jpg", "img2img-5-1.jpg"]
    with Image.open(files[0]) as im:
        assert im.size == (768, 512)


async def test_outpaint_cli(tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png((500, 500)))
    async with FakeSegmind() as api:
        env = environment(tmp_path, SEGMIND_API_KEY=api.api_key, SEGMIND_BASE_URL=api.base_url)
        code, _, err = await sdbot(
            tmp_path, env, "outpaint", "--image", "in.png", "--prompt", "more sky",
            "--out", "out", "--direction", "up",
        )  # fmt: skip
        assert code == 0, err
        assert api.requests[0].body["img_height"] == 1024
    [result] = (tmp_path / "out").iterdir()
    with Image.open(result) as im:
        assert im.size == (768, 1024)


async def test_cli_failures_are_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "in.png").write_bytes(png())
    (tmp_path / "notes.png").write_text("hello")
    async with FakeSegmind() as api:
        env = environment(tmp_path, SEGMIND_API_KEY=api.api_key, SEGMIND_BASE_URL=api.base_url)
        base = ("img2img", "--prompt", "x", "--out", "out")
        cases = [
            (("--image", "notes.png"), "not a PNG, JPEG, WebP or GIF"),
            (("--image", "in.png", "--steps", "500"), "`steps` = 500 is not allowed"),
            (("--image", "missing.png"), "cannot read missing.png"),
        ]
        for extra, message in cases:
            code, _, err = await sdbot(tmp_path, env, *base, *extra)
            assert code != 0 and message in err and err.count("\n") == 1, err
        api.inject(Respond(401, {"error": "Invalid API key"}))
        code, _, err = await sdbot(tmp_path, env, *base, "--image", "in.png")
        assert code != 0 and "misconfigured" in err and api.api_key not in err
        api.inject(Respond(406, {"error": "Not enough credits"}))
        code, _, err = await sdbot(tmp_path, env, *base, "--image", "in.png")
        assert code != 0 and "out of credits" in err
        assert api.billed == 0
    code, _, err = await sdbot(tmp_path, environment(tmp_path), *base, "--image", "in.png")
    assert code != 0 and "SEGMIND_API_KEY" in err


async def test_run_without_a_token_names_it(tmp_path: Path) -> None:
    code, _, err = await sdbot(tmp_path, environment(tmp_path), "run")
    assert code != 0 and "DISCORD_TOKEN" in err


async def test_run_with_a_bad_setting_names_it(tmp_path: Path) -> None:
    env = environment(tmp_path, DISCORD_TOKEN="x", SEGMIND_MAX_CONCURRENCY="many")
    code, _, err = await sdbot(tmp_path, env, "run")
    assert code != 0 and "SEGMIND_MAX_CONCURRENCY" in err


async def test_run_serves_then_stops_cleanly_on_sigterm(tmp_path: Path, fake: FakeDiscord) -> None:
    fake.add_guild("server").add_text_channel("images")
    async with FakeSegmind() as api:
        env = environment(
            tmp_path, **fake.env, SEGMIND_API_KEY=api.api_key, SEGMIND_BASE_URL=api.base_url
        )
        process = await start(tmp_path, env, "run")
        try:
            await fake.wait_until(lambda: fake.connected and fake.commands, within=30)
            names = {c["name"] for c in fake.commands[None]}
            assert {"img2img", "outpaint", "credits", "quota", "Img2img", "Outpaint"} <= names
            assert fake.identifies[-1].intents == 1  # guilds only: no privileged intent
            process.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(process.communicate(), timeout=30)
        finally:
            if process.returncode is None:  # a failed assertion must not leave a bot behind
                process.kill()
                await process.wait()
        assert process.returncode == 0, err.decode()
        log = err.decode()
        assert fake.token not in log and api.api_key not in log
        assert "shutting down" in log
    # `run` migrated the database before connecting.
    ledger = await SqliteLedger.open(tmp_path / "db.sqlite3", apply_migrations=False)
    await ledger.close()


async def test_doctor(tmp_path: Path) -> None:
    async with FakeSegmind() as api:
        env = environment(
            tmp_path, DISCORD_TOKEN="t", SEGMIND_API_KEY=api.api_key, SEGMIND_BASE_URL=api.base_url
        )
        code, out, _ = await sdbot(tmp_path, env, "doctor")
        assert code == 0, out
        assert "image API key works" in out and api.billed == 0
        api.inject(Respond(401, {"error": "Invalid API key"}))
        code, out, _ = await sdbot(tmp_path, env, "doctor")
        assert code == 1 and "FAIL image API" in out


async def test_migrate_and_health(tmp_path: Path) -> None:
    env = environment(tmp_path)
    code, out, _ = await sdbot(tmp_path, env, "migrate")
    assert code == 0 and "schema version" in out
    code, _, _ = await sdbot(tmp_path, env, "health")
    assert code == 1  # no bot has reported itself healthy
