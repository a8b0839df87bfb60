"""The benchmark's phases. Each returns a JSON-able dict of figures (times in milliseconds)."""

from __future__ import annotations

import asyncio
import inspect
import math
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import Bench
from bench.images import measure_floor, result_like
from tests.standins.fake_discord import Interaction

MS = 1000.0


@dataclass(frozen=True)
class Config:
    per_job_reps: int = 10
    floor_reps: int = 15
    ack_sequential: int = 20
    ack_rounds: int = 3
    ack_levels: tuple[int, ...] = (1, 50, 200)
    ack_upstream_delay: float = 0.1
    throughput_jobs: int = 40
    throughput_delay: float = 0.5
    throughput_reps: int = 2
    rss_jobs: int = 50
    ledger_tasks: int = 100
    ledger_pairs: int = 40
    ledger_runs: int = 3
    ledger_sync: tuple[str, ...] = ("FULL",)
    profile: str | None = None  # "cprofile" or "pyinstrument": profile the bot per phase

    @classmethod
    def quick(cls) -> Config:
        return cls(
            per_job_reps=4,
            floor_reps=7,
            ack_sequential=8,
            ack_rounds=1,
            throughput_reps=1,
            ledger_runs=1,
        )

    @classmethod
    def long(cls) -> Config:
        return cls(
            per_job_reps=30,
            floor_reps=30,
            ack_sequential=50,
            ack_rounds=8,
            throughput_reps=5,
            ledger_runs=5,
            ledger_sync=("FULL", "NORMAL"),
        )


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values) if values else math.nan,
        "min": min(values) if values else math.nan,
        "max": max(values) if values else math.nan,
        "n": len(values),
    }


class Profiled:
    """Profile the bot (in its process) around a phase when ``--profile`` asks for it."""

    def __init__(self, bench: Bench, config: Config, name: str) -> None:
        self.bench, self.config, self.name = bench, config, name
        self.path: str | None = None

    async def __aenter__(self) -> Profiled:
        if self.config.profile:
            await self.bench.bot.call("profile_start", kind=self.config.profile)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.config.profile:
            base = str(self.bench.workdir / f"profile-{self.name}")
            self.path = (await self.bench.bot.call("profile_stop", path=base))["path"]


async def _window(bench: Bench) -> None:
    await bench.bot.call("reset")


async def _stall(bench: Bench) -> dict[str, Any]:
    report = await bench.bot.call("report")
    return {
        "stall": report["stall"],
        "memory": report["memory"],
        "threads": report["threads"],
        "gc": report["gc"],
    }


# --- warm-up ----------------------------------------------------------------------------------


async def warm_up(bench: Bench, image: bytes) -> None:
    """Two jobs, so that imports, thread pools and connections exist before anything counts."""
    bench.segmind.latency = 0.0
    for member in bench.take_members(2):
        it = await bench.img2img(member, image, "warmup.jpg")
        await bench.wait_results([it], within=60)


# --- peak RSS with N jobs in flight -----------------------------------------------------------


async def rss_in_flight(bench: Bench, photo: bytes, config: Config) -> dict[str, Any]:
    """``rss_jobs`` members send a photo-sized JPEG at once; the upstream holds every request
    until all of them are accepted (queued or running), then answers at once."""
    n = config.rss_jobs
    reset = await bench.bot.call("reset")
    before = reset["memory"]
    gate = asyncio.Event()
    bench.segmind.gate = gate
    bench.segmind.latency = 0.0
    arrived_before = bench.segmind.arrived
    started = time.monotonic()
    try:
        async with Profiled(bench, config, "rss"):
            its = [await bench.img2img(m, photo, "photo.jpg") for m in bench.take_members(n)]

            def all_in_flight() -> bool:
                accepted = all(it.original is not None and not it.original.loading for it in its)
                arrived = bench.segmind.arrived - arrived_before
                return accepted and arrived >= min(n, bench.concurrency)

            await bench.discord.wait_until(all_in_flight, within=120)
            intake = time.monotonic() - started
            at_peak = await bench.bot.call("report")
            gate.set()
            await bench.wait_results(its, within=120)
    finally:
        gate.set()
        bench.segmind.gate = None
    after = await _stall(bench)
    return {
        "jobs": n,
        "input_bytes": len(photo),
        "rss_before_mib": before["VmRSS"],
        "rss_all_in_flight_mib": at_peak["memory"]["VmRSS"],
        "peak_rss_mib": after["memory"]["VmHWM"],
        "peak_reset_supported": reset["peak_reset"],
        "intake_s": intake,
        "stall": after["stall"],
        "gc": after["gc"],
        "threads": at_peak["threads"],
    }


# --- the bot's own time per job ---------------------------------------------------------------


async def own_time(bench: Bench, name: str, image: bytes, config: Config) -> dict[str, Any]:
    """Sequential jobs (nothing else running): end to end minus the upstream's own time,
    beside the floor measured right after, on the same bytes, in this process."""
    bench.segmind.latency = 0.0
    rows: list[dict[str, float]] = []
    sizes: set[tuple[int, int]] = set()
    await _window(bench)
    async with Profiled(bench, config, f"own-{name}"):
        for member in bench.take_members(config.per_job_reps):
            it = await bench.img2img(member, image, f"{name}.jpg")
            await bench.wait_results([it], within=60)
            up = bench.upstream(it)
            stored = bench.discord.result_at[str(it.id)]
            e2e = stored - it.sent_at
            rows.append(
                {
                    "e2e_ms": MS * e2e,
                    "upstream_own_ms": MS * up.own,
                    "bot_own_ms": MS * (e2e - up.own),
                    "ack_ms": MS * (it.ack_latency or math.nan),
                    "before_upstream_ms": MS * (up.read_at - it.sent_at),
                    "after_upstream_ms": MS * (stored - up.done_at),
                }
            )
            body = _request_body(bench, it)
            sizes.add((int(body.get("img_width", 0)), int(body.get("img_height", 0))))
    spans = (await bench.bot.call("report")).get("spans", {})
    (request_size,) = sizes
    result = result_like(request_size)
    floor = await asyncio.to_thread(
        measure_floor, image, request_size, result, reps=config.floor_reps
    )
    tight = await asyncio.to_thread(
        measure_floor, image, request_size, result, reps=config.floor_reps, tight=True
    )
    medians = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {
        "input": name,
        "input_bytes": len(image),
        "request_size": list(request_size),
        "runs": rows,
        "median": medians,
        "floor": floor.as_dict(),
        "floor_tight_draft": tight.as_dict(),
        "ratio": medians["bot_own_ms"] / floor.total_ms,
        "spans": spans,
    }


def _request_body(bench: Bench, it: Interaction) -> dict[str, Any]:
    prompt = bench.prompts[it.id]
    for record in reversed(bench.segmind.requests):
        if record.body is not None and record.body.get("prompt") == prompt:
            return record.body
    raise LookupError(prompt)


# --- time to acknowledge ----------------------------------------------------------------------


async def acknowledge(bench: Bench, image: bytes, config: Config) -> dict[str, Any]:
    """``level`` members run /img2img at the same instant; every job then runs to its end
    (upstream delay ``ack_upstream_delay``) before the next round."""
    bench.segmind.latency = config.ack_upstream_delay
    out: dict[str, Any] = {"upstream_delay_s": config.ack_upstream_delay, "levels": {}}
    for level in config.ack_levels:
        await _window(bench)
        latencies: list[float] = []
        gateway: list[float] = []  # sent_at → frame written: the stand-in's share
        after_frame: list[float] = []  # frame written → deferral accepted
        bursts: list[float] = []
        rounds = config.ack_sequential if level == 1 else config.ack_rounds
        async with Profiled(bench, config, f"ack-{level}"):
            for _ in range(rounds):
                its = [
                    await bench.img2img(m, image, "photo.jpg") for m in bench.take_members(level)
                ]
                await bench.wait_results(its, within=60 + level * 1.0)
                latencies += [MS * (it.ack_latency or math.inf) for it in its]
                for it in its:
                    written = bench.discord.frame_sent_at.get(it.id, math.nan)
                    gateway.append(MS * (written - it.sent_at))
                    after_frame.append(MS * ((it.acked_at or math.inf) - written))
                bursts.append(MS * (its[-1].sent_at - its[0].sent_at))
        stall = await _stall(bench)
        out["levels"][str(level)] = {
            "commands": len(latencies),
            "rounds": rounds,
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "max_ms": max(latencies),
            "gateway_p50_ms": percentile(gateway, 50),
            "gateway_p99_ms": percentile(gateway, 99),
            "after_frame_p50_ms": percentile(after_frame, 50),
            "after_frame_p99_ms": percentile(after_frame, 99),
            "dispatch_burst_ms": statistics.median(bursts),
            "stall": stall["stall"],
            "gc": stall["gc"],
            "samples_ms": latencies,
        }
    return out


# --- throughput -------------------------------------------------------------------------------


async def throughput(bench: Bench, image: bytes, config: Config) -> dict[str, Any]:
    """N jobs at once, C upstream slots, upstream delay d: ideal ceil(N/C)·d vs the wall time
    from the first command to the last result stored."""
    n, c, d = config.throughput_jobs, bench.concurrency, config.throughput_delay
    bench.segmind.latency = d
    ideal = math.ceil(n / c) * d
    runs = []
    await _window(bench)
    async with Profiled(bench, config, "throughput"):
        for _ in range(config.throughput_reps):
            bench.segmind.max_in_flight = 0
            its = [await bench.img2img(m, image, "photo.jpg") for m in bench.take_members(n)]
            await bench.wait_results(its, within=60 + 2 * ideal)
            first = min(it.sent_at for it in its)
            last = max(bench.discord.result_at[str(it.id)] for it in its)
            wall = last - first
            calls = [bench.upstream(it) for it in its]
            own = statistics.median(c.own for c in calls)
            runs.append(
                {
                    "wall_s": wall,
                    "ratio": ideal / wall,
                    # the stand-in's real time per call (d plus decoding and rendering)
                    "upstream_own_median_s": own,
                    "ratio_to_measured_upstream": math.ceil(n / c) * own / wall,
                    "first_call_after_s": min(c.read_at for c in calls) - first,
                    "last_result_after_call_s": last - max(c.done_at for c in calls),
                    "upstream_max_in_flight": bench.segmind.max_in_flight,
                }
            )
    stall = await _stall(bench)
    ratios = [r["ratio"] for r in runs]
    return {
        "jobs": n,
        "concurrency": c,
        "upstream_delay_s": d,
        "ideal_s": ideal,
        "runs": runs,
        "ratio": statistics.median(ratios),
        "stall": stall["stall"],
        "gc": stall["gc"],
    }


# --- ledger -----------------------------------------------------------------------------------


async def ledger(config: Config) -> dict[str, Any]:
    """bench/ledger.py's measurement (hold→capture pairs/s, fresh database per run)."""
    from bench.ledger import one_run
    from bot.core.ledger.sqlite import SqliteLedger

    # The bot's own group-commit size: SqliteLedger.open's default (the bot passes none).
    max_batch = int(inspect.signature(SqliteLedger.open).parameters["max_batch"].default)
    out: dict[str, Any] = {
        "tasks": config.ledger_tasks,
        "pairs_per_task": config.ledger_pairs,
        "max_batch": max_batch,
    }
    for sync in config.ledger_sync:
        rates = [
            await one_run(sync, config.ledger_tasks, config.ledger_pairs, max_batch)  # type: ignore[arg-type]
            for _ in range(config.ledger_runs)
        ]
        out[sync] = {"median": statistics.median(rates), "runs": rates}
    return out


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sdbot-bench-"))
