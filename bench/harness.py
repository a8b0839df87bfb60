"""The real bot against the loopback stand-ins, over real sockets, with the bot in a child process.

Process layout (two processes, as in production where Discord and Segmind are other machines):

- this process: :class:`BenchDiscord` and :class:`BenchSegmind` (the test stand-ins from
  ``tests.standins``, subclassed only to timestamp what they see) and the load generator;
- a child process (``python -m bench.botproc``): the real :class:`bot.bot.SdBot` with its own
  event loop, SQLite database, data directory and thread pools, configured through environment
  variables exactly as ``sdbot run`` is.

So the stand-ins' CPU (the gateway's zlib and JSON, multipart parsing, the fake API decoding the
request's base64 image and rendering a result) never runs on the bot's event loop or in its
threads, and the bot's peak RSS is the bot's alone. On this 2-core machine the two processes
still share the cores; see docs/benchmarks.md.

Timestamps all come from ``time.monotonic()`` in this process:
``Interaction.sent_at`` (INTERACTION_CREATE queued on the gateway), ``Interaction.acked_at``
(the deferral accepted), :attr:`BenchSegmind.calls` (request body fully read → answer ready,
i.e. the upstream's own time, including its decode, ``latency`` and render) and
:attr:`BenchDiscord.result_at` (the result message — public, with an image and the job's
buttons — stored).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.standins.fake_discord import Channel, FakeDiscord, Guild, Interaction, Member, Message
from tests.standins.fake_segmind import FakeSegmind, RecordedRequest

REPO = Path(__file__).resolve().parent.parent
_RECORD_KEY = web.RequestKey("bench.record", RecordedRequest)


@dataclass
class UpstreamCall:
    prompt: str
    read_at: float  # the request body fully received
    done_at: float  # the answer ready to be written

    @property
    def own(self) -> float:
        return self.done_at - self.read_at


class BenchSegmind(FakeSegmind):
    """FakeSegmind that times its own work per request, keyed by the request's prompt.

    ``gate``: when set to an unset Event, requests wait for it before being served (not counted
    as the upstream's own time; used to hold jobs "in flight").
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: dict[str, UpstreamCall] = {}
        self.gate: asyncio.Event | None = None
        self.arrived = 0  # requests whose body was read (counted before the gate)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()  # cached by aiohttp: the stand-in's own read returns at once
        self.arrived += 1
        if self.gate is not None:
            await self.gate.wait()
        read_at = time.monotonic()
        response = await super()._handle(request)
        record: RecordedRequest | None = request.get(_RECORD_KEY)
        if record is not None and record.body is not None:
            prompt = str(record.body.get("prompt", ""))
            self.calls[prompt] = UpstreamCall(prompt, read_at, time.monotonic())
        return response

    def _record(self, request: web.Request, body: dict[str, Any] | None) -> RecordedRequest:
        record = super()._record(request, body)
        request[_RECORD_KEY] = record
        return record


class BenchDiscord(FakeDiscord):
    """FakeDiscord that notes when each job's public result message is stored.

    A result is a non-ephemeral message with an attachment and the job's ``sdbot:…:<job>``
    buttons (the same test as tests/bot/conftest.py's ``World.result_for``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.result_at: dict[str, float] = {}
        self.result_event = asyncio.Event()
        self.frame_sent_at: dict[int, float] = {}  # interaction id → its frame written

    def _frame_written(self, frame: dict[str, Any]) -> None:
        # Interaction.sent_at is when a frame was QUEUED; a burst of 200 is serialised and
        # compressed in the stand-in before the bot sees it, so note when it hit the socket.
        if frame.get("t") == "INTERACTION_CREATE":
            self.frame_sent_at.setdefault(int(frame["d"]["id"]), time.monotonic())

    def _add_message(self, message: Message) -> None:
        super()._add_message(message)
        self._note_result(message)

    def _edit_message(self, message: Message, payload: dict[str, Any], files: list[Any]) -> None:
        super()._edit_message(message, payload, files)
        self._note_result(message)

    def _note_result(self, message: Message) -> None:
        if message.ephemeral or not message.attachments:
            return
        for custom_id in message.custom_ids:
            if custom_id.startswith("sdbot:"):
                self.result_at.setdefault(custom_id.rsplit(":", 1)[1], time.monotonic())
                self.result_event.set()
                return


class BotProcess:
    """The bot's child process and its JSON-lines control channel."""

    def __init__(
        self, proc: asyncio.subprocess.Process, hello: dict[str, Any], log_path: Path
    ) -> None:
        self.proc = proc
        self.pid = int(hello["pid"])
        self.bot_package = str(hello.get("bot_package"))
        self.log_path = log_path
        self._lock = asyncio.Lock()

    @classmethod
    async def start(cls, env: dict[str, str], log_path: Path, within: float = 60) -> BotProcess:
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SDBOT_", "SEGMIND_", "DISCORD_", "DATABASE_"))
        }
        full_env.update(env)
        extra_path = os.environ.get("PYTHONPATH")
        full_env["PYTHONPATH"] = str(REPO) + (os.pathsep + extra_path if extra_path else "")
        log = log_path.open("wb")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.botproc",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=full_env,
            cwd=str(REPO),
            limit=2**24,
        )
        log.close()
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), within)
        except TimeoutError:
            proc.kill()
            raise RuntimeError(f"the bot did not get ready; see {log_path}") from None
        if not line:
            await proc.wait()
            tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-3000:]
            raise RuntimeError(f"the bot exited ({proc.returncode}) before ready:\n{tail}")
        return cls(proc, json.loads(line), log_path)

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        async with self._lock:
            self.proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            await self.proc.stdin.drain()
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the bot process died; see {self.log_path}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    async def stop(self, within: float = 20) -> None:
        with contextlib.suppress(RuntimeError, ConnectionError):
            await asyncio.wait_for(self.call("quit"), within)
        try:
            await asyncio.wait_for(self.proc.wait(), within)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


@dataclass
class Bench:
    """Everything a scenario needs: the stand-ins, the guild, the members and the bot."""

    discord: BenchDiscord
    segmind: BenchSegmind
    guild: Guild
    channel: Channel
    members: list[Member]
    bot: BotProcess
    workdir: Path
    concurrency: int
    _next_member: int = 0
    _counter: int = 0
    prompts: dict[int, str] = field(default_factory=dict)  # interaction id → prompt

    def take_members(self, n: int) -> list[Member]:
        """``n`` members not used by the previous call (cycling), so commands are distinct."""
        out = [self.members[(self._next_member + i) % len(self.members)] for i in range(n)]
        self._next_member = (self._next_member + n) % len(self.members)
        return out

    async def img2img(self, member: Member, image: bytes, filename: str) -> Interaction:
        """``/img2img`` with ``image`` and a prompt unique to this command."""
        self._counter += 1
        prompt = f"bench {self._counter:06d}: a watercolour landscape"
        it = await self.discord.slash(
            member, self.channel, "img2img", image=(filename, image), prompt=prompt
        )
        self.prompts[it.id] = prompt
        return it

    async def wait_results(self, its: list[Interaction], within: float) -> None:
        """Wait until every interaction's result is stored (TimeoutError names the missing)."""
        keys = [str(it.id) for it in its]
        deadline = time.monotonic() + within
        while True:
            self.discord.result_event.clear()
            missing = [k for k in keys if k not in self.discord.result_at]
            if not missing:
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failed = self._failures(its)
                raise TimeoutError(
                    f"{len(missing)} of {len(keys)} results missing after {within:.0f} s; "
                    f"failures shown to members: {failed[:3]}; bot log: {self.bot.log_path}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.discord.result_event.wait(), min(remaining, 0.5))

    def _failures(self, its: list[Interaction]) -> list[str]:
        out = []
        for it in its:
            message = it.original
            if message is None or str(it.id) in self.discord.result_at:
                continue
            text = " ".join(str(e.get("description", "")) for e in message.embeds)
            if "fail" in text.lower() or "sorry" in text.lower() or "not" in text.lower():
                out.append(text[:200])
        return out

    def e2e(self, it: Interaction) -> float:
        return self.discord.result_at[str(it.id)] - it.sent_at

    def upstream(self, it: Interaction) -> UpstreamCall:
        return self.segmind.calls[self.prompts[it.id]]


def bot_env(
    workdir: Path, discord: FakeDiscord, segmind: FakeSegmind, concurrency: int
) -> dict[str, str]:
    """The bot's settings (what an operator would put in .env), pointed at the stand-ins."""
    return {
        **discord.env,
        "SEGMIND_API_KEY": segmind.api_key,
        "SEGMIND_BASE_URL": segmind.base_url,
        "SEGMIND_MAX_CONCURRENCY": str(concurrency),
        "SEGMIND_REQUESTS_PER_MINUTE": "100000",
        "SDBOT_MAX_JOBS_PER_USER": "1",
        "SDBOT_MAX_QUEUED_PER_USER": "50",
        "SDBOT_ATTACHMENT_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"sqlite:///{workdir}/sdbot.sqlite3",
        "SDBOT_DATA_DIR": str(workdir / "data"),
        "SDBOT_UPSTREAM_TIMEOUT": "120",
        "SDBOT_SHUTDOWN_GRACE": "5",
        "SDBOT_LOG_LEVEL": "INFO",
    }


@contextlib.asynccontextmanager
async def running(
    workdir: Path,
    *,
    members: int,
    concurrency: int,
    credits: int = 10**6,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[Bench]:
    """Start the stand-ins and the bot child; yield a :class:`Bench`; stop everything."""
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    async with (
        BenchSegmind(balance=Decimal(10**9), price=Decimal("0.004")) as segmind,
        BenchDiscord() as discord,
    ):
        guild = discord.add_guild("Bench server")
        channel = guild.add_text_channel("images")
        people = [guild.add_member(f"member{i:04d}") for i in range(members)]
        env = bot_env(workdir, discord, segmind, concurrency) | (extra_env or {})
        bot = await BotProcess.start(env, workdir / "bot.log")
        try:
            await discord.wait_until(lambda: discord.commands.get(None), within=30)
            await bot.call("grant", guild=guild.id, users=[m.id for m in people], amount=credits)
            yield Bench(discord, segmind, guild, channel, people, bot, workdir, concurrency)
        finally:
            await bot.stop()
