"""A soak run (not part of CI): the real bot, in its own process, under a steady load for as
long as you like, reporting how it holds up over time.

    .venv/bin/python -m bench.soak --minutes 60 --rate 2 --upstream-delay 3

Every ``--every`` seconds it prints one line (and keeps it for the JSON report): commands sent
and delivered, acknowledgement p50 / p99 / max over the interval, the bot's longest event-loop
stall in the interval, its RSS and peak RSS, the SQLite WAL file's size, and jobs still open.
A healthy bot shows flat memory, a bounded WAL (checkpoints keep up) and open jobs returning
to zero. Commands come from ``--members`` members in turn, each job pays a few credits, and
the stand-in API answers after ``--upstream-delay`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.harness import Bench, running
from bench.images import photo_like
from tests.standins.fake_discord import Interaction

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Sample:
    minute: float
    sent: int
    delivered: int
    ack_p50_ms: float
    ack_p99_ms: float
    ack_max_ms: float
    loop_stall_max_ms: float
    rss_mib: float
    peak_rss_mib: float
    wal_mib: float
    open_jobs: int


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0


async def _send(
    bench: Bench, image: bytes, rate: float, stop: asyncio.Event, sent: list[Interaction]
) -> None:
    member = 0
    while not stop.is_set():
        sent.append(await bench.img2img(bench.members[member], image, "soak.jpg"))
        member = (member + 1) % len(bench.members)
        await asyncio.sleep(1 / rate)


async def soak(args: argparse.Namespace, workdir: Path) -> list[Sample]:
    image = photo_like((1024, 1024))
    samples: list[Sample] = []
    async with running(workdir, members=args.members, concurrency=args.concurrency) as bench:
        bench.segmind.latency = args.upstream_delay
        stop = asyncio.Event()
        sent: list[Interaction] = []
        sender = asyncio.create_task(_send(bench, image, args.rate, stop, sent))
        started = time.monotonic()
        seen = 0
        try:
            while time.monotonic() - started < args.minutes * 60:
                await bench.bot.call("reset")
                await asyncio.sleep(args.every)
                report = await bench.bot.call("report")
                window = [i.ack_latency for i in sent[seen:] if i.ack_latency is not None]
                seen = len(sent)
                wal = workdir / "sdbot.sqlite3-wal"
                delivered = len(bench.discord.result_at)
                sample = Sample(
                    minute=round((time.monotonic() - started) / 60, 2),
                    sent=len(sent),
                    delivered=delivered,
                    ack_p50_ms=1000 * _percentile(window, 0.5),
                    ack_p99_ms=1000 * _percentile(window, 0.99),
                    ack_max_ms=1000 * max(window, default=0.0),
                    loop_stall_max_ms=report["stall"]["max_ms"],
                    rss_mib=report["memory"]["VmRSS"],
                    peak_rss_mib=report["memory"]["VmHWM"],
                    wal_mib=wal.stat().st_size / 2**20 if wal.exists() else 0.0,
                    open_jobs=len(sent) - delivered,
                )
                samples.append(sample)
                print(
                    f"{sample.minute:6.1f} min  sent {sample.sent:6d}  delivered {delivered:6d}"
                    f"  ack p50/p99/max {sample.ack_p50_ms:5.0f}/{sample.ack_p99_ms:5.0f}/"
                    f"{sample.ack_max_ms:5.0f} ms  stall {sample.loop_stall_max_ms:5.0f} ms"
                    f"  RSS {sample.rss_mib:5.0f} MiB  WAL {sample.wal_mib:6.1f} MiB"
                    f"  open {sample.open_jobs:4d}",
                    flush=True,
                )
        finally:
            stop.set()
            await sender
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="how long (default 10)")
    parser.add_argument("--rate", type=float, default=2, help="commands per second (default 2)")
    parser.add_argument("--members", type=int, default=50, help="distinct members (default 50)")
    parser.add_argument("--concurrency", type=int, default=4, help="SEGMIND_MAX_CONCURRENCY")
    parser.add_argument(
        "--upstream-delay", type=float, default=3.0, help="the API's seconds per call (3)"
    )
    parser.add_argument("--every", type=float, default=30, help="seconds between lines (30)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sdbot-soak-") as tmp:
        samples = asyncio.run(soak(args, Path(tmp)))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"soak-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps({"args": vars(args), "samples": [asdict(s) for s in samples]}))
    print(f"report: {out}")


if __name__ == "__main__":
    main()
