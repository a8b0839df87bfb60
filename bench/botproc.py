"""The bot under test, alone in a process of its own (``python -m bench.botproc``).

It runs the real :class:`bot.bot.SdBot` exactly as ``sdbot run`` does (settings from the
environment, the redacting log handler on stderr, ``point_discord_at``), plus two things the
benchmark needs from inside the bot's process:

- a :class:`~bench.loopstall.LoopStallMonitor` on the bot's event loop;
- a control channel: one JSON object per line on stdin, one JSON answer per line on a private
  copy of the original stdout (fd 1 itself is pointed at stderr, so nothing the bot or a library
  prints can corrupt the protocol).

Operations: ``grant`` (credits for members), ``reset`` (open a new loop-stall window and reset
the peak RSS through ``/proc/self/clear_refs``), ``report`` (the window's lateness figures and
VmHWM/VmRSS), ``profile_start`` / ``profile_stop`` (cProfile of the bot's thread, or
pyinstrument when asked and installed), ``quit``.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import sys
import time
from typing import Any

from bench.loopstall import LoopStallMonitor
from bench.spans import Spans
from bot.bot import SdBot, point_discord_at
from bot.config import load_settings
from bot.logs import setup_logging

# Set to a number of milliseconds: asyncio debug mode, logging slower callbacks (diagnosis only:
# debug mode itself slows the loop down).
SLOW_CALLBACK_ENV = "SDBOT_BENCH_SLOW_CALLBACK_MS"
# Set to a number of milliseconds: log every loop iteration busier than that, with its
# callbacks grouped (bench/looptrace.py; diagnosis only).
TRACE_LOOP_ENV = "SDBOT_BENCH_TRACE_LOOP_MS"
# Set to 1: time the bot's steps (bench/spans.py); "report" then includes them.
SPANS_ENV = "SDBOT_BENCH_SPANS"
# Set to 1: run the bot on uvloop (an experiment; uvloop must be importable).
UVLOOP_ENV = "SDBOT_BENCH_UVLOOP"
# Set to 1: gc.freeze() once the bot is ready (an experiment standing in for a proposed fix).
GC_FREEZE_ENV = "SDBOT_BENCH_GC_FREEZE"


def memory() -> dict[str, float]:
    """VmHWM (peak since start or the last reset) and VmRSS of this process, in MiB."""
    out: dict[str, float] = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmHWM", "VmRSS"):
                out[name] = int(value.split()[0]) / 1024
    return out


def reset_peak_rss() -> bool:
    """Make VmHWM start again from the current RSS (Linux ≥ 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class Profiling:
    def __init__(self) -> None:
        self._cprofile: cProfile.Profile | None = None
        self._pyinstrument: Any = None

    def start(self, kind: str) -> None:
        if kind == "pyinstrument":
            from pyinstrument import Profiler  # optional: pip install pyinstrument

            self._pyinstrument = Profiler(async_mode="disabled", interval=0.0005)
            self._pyinstrument.start()
        else:
            self._cprofile = cProfile.Profile()
            self._cprofile.enable()

    def stop(self, path: str) -> str:
        if self._pyinstrument is not None:
            self._pyinstrument.stop()
            text = self._pyinstrument.output_text(unicode=True, color=False, show_all=False)
            with open(path + ".html", "w") as f:
                f.write(self._pyinstrument.output_html())
            self._pyinstrument = None
        elif self._cprofile is not None:
            self._cprofile.disable()
            self._cprofile.dump_stats(path + ".pstats")
            buf = io.StringIO()
            stats = pstats.Stats(self._cprofile, stream=buf)
            stats.sort_stats("tottime").print_stats(40)
            stats.sort_stats("cumulative").print_stats(60)
            text = buf.getvalue()
            self._cprofile = None
        else:
            return ""
        with open(path + ".txt", "w") as f:
            f.write(text)
        return path + ".txt"


async def serve(protocol: io.TextIOWrapper) -> None:
    settings = load_settings(os.environ, env_file=None)
    token = settings.require_discord_token()
    setup_logging(settings.log_level, secrets=[token, settings.require_api_key()])
    point_discord_at(settings)
    loop = asyncio.get_running_loop()
    slow_ms = float(os.environ.get(SLOW_CALLBACK_ENV) or 0)
    trace_ms = float(os.environ.get(TRACE_LOOP_ENV) or 0)
    if trace_ms > 0:
        from bench import looptrace

        looptrace.install(trace_ms / 1000)
    if slow_ms > 0:
        # asyncio's debug mode logs every callback or task step that holds the loop longer.
        loop.set_debug(True)
        loop.slow_callback_duration = slow_ms / 1000
    spans = Spans() if os.environ.get(SPANS_ENV) == "1" else None
    if spans is not None:
        spans.install()
    monitor = LoopStallMonitor()
    monitor.start()
    profiling = Profiling()

    def emit(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    bot = SdBot(settings, guild_ready_timeout=0.05)
    runner = asyncio.create_task(bot.start(token), name="discord")
    ready = asyncio.create_task(bot.wait_until_ready())
    done, _ = await asyncio.wait({runner, ready}, return_when=asyncio.FIRST_COMPLETED)
    if runner in done:
        runner.result()
        raise RuntimeError("bot.start() returned before the bot was ready")
    if spans is not None:
        # Again: discord.py loads each extension (the cogs) as a fresh module object.
        spans.install()
    if os.environ.get(GC_FREEZE_ENV) == "1":
        gc.collect()
        gc.freeze()
    emit(
        {
            "event": "ready",
            "pid": os.getpid(),
            "memory": memory(),
            "bot_package": os.path.dirname(sys.modules["bot"].__file__ or ""),
        }
    )

    reader = asyncio.StreamReader(limit=2**24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            command = json.loads(line)
            op = command.pop("op")
            answer: dict[str, Any] = {"op": op}
            if op == "grant":
                for user in command["users"]:
                    await bot.ledger.grant(command["guild"], user, command["amount"], actor="bench")
            elif op == "reset":
                monitor.reset()
                if spans is not None:
                    spans.reset()
                answer["peak_reset"] = reset_peak_rss()
                answer["memory"] = memory()
            elif op == "report":
                answer["stall"] = monitor.summary()
                answer["memory"] = memory()
                answer["threads"] = len(os.listdir("/proc/self/task"))
                if spans is not None:
                    answer["spans"] = spans.summary()
                answer["gc"] = {
                    "tracked_objects": len(gc.get_objects()),
                    "frozen_objects": gc.get_freeze_count(),
                    "collections": [g["collections"] for g in gc.get_stats()],
                }
            elif op == "profile_start":
                profiling.start(command.get("kind", "cprofile"))
            elif op == "profile_stop":
                answer["path"] = profiling.stop(command["path"])
            elif op == "quit":
                emit(answer)
                break
            else:
                answer["error"] = f"unknown op {op!r}"
            answer["at"] = time.monotonic()
            emit(answer)
    finally:
        await monitor.stop()
        await bot.shutdown()
        runner.cancel()
        await asyncio.gather(runner, ready, return_exceptions=True)


def main() -> None:
    # The protocol gets its own copy of stdout; fd 1 then goes to stderr (the log file).
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if os.environ.get(UVLOOP_ENV) == "1":
        import uvloop  # experiment only: not a dependency of the bot

        uvloop.run(serve(protocol))
    else:
        asyncio.run(serve(protocol))


if __name__ == "__main__":
    main()
