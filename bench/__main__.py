"""What the bot itself costs per job, against its floor: ``.venv/bin/python -m bench``.

Starts the real bot in a child process against the loopback Discord and Segmind stand-ins
(tests/standins) over real sockets, runs the phases below, prints a table and writes a JSON
report to bench/results/. Not part of CI's pass/fail. Method: docs/benchmarks.md.

    .venv/bin/python -m bench              # default, about 75 s on 2 cores
    .venv/bin/python -m bench --quick      # fewer repetitions, under a minute
    .venv/bin/python -m bench --long       # more repetitions, both ledger sync modes
    .venv/bin/python -m bench --repeat 3   # everything 3 times, medians of the figures
    .venv/bin/python -m bench --only own,ack --profile cprofile --keep
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report, scenarios
from bench.botproc import (
    GC_FREEZE_ENV,
    SLOW_CALLBACK_ENV,
    SPANS_ENV,
    TRACE_LOOP_ENV,
    UVLOOP_ENV,
)
from bench.harness import running
from bench.images import photo_like

PHASES = ("rss", "own", "ack", "throughput", "ledger")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="fewer repetitions (< 1 minute)")
    size.add_argument("--long", action="store_true", help="more repetitions (a few minutes)")
    parser.add_argument(
        "--only", default=",".join(PHASES), help=f"comma-separated phases of {', '.join(PHASES)}"
    )
    parser.add_argument(
        "--profile",
        choices=("cprofile", "pyinstrument"),
        help="profile the bot's process during each phase (files in the work directory)",
    )
    parser.add_argument(
        "--slow-callbacks",
        type=float,
        metavar="MS",
        help="diagnosis: run the bot's loop in asyncio debug mode, logging steps slower than MS",
    )
    parser.add_argument(
        "--trace-loop",
        type=float,
        metavar="MS",
        help="diagnosis: log every bot loop iteration busier than MS, with its callbacks",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="experiment: gc.freeze() in the bot once it is ready",
    )
    parser.add_argument(
        "--no-spans",
        action="store_true",
        help="do not time the bot's steps (bench/spans.py; costs microseconds per job)",
    )
    parser.add_argument(
        "--uvloop",
        action="store_true",
        help="experiment: run the bot on uvloop (must be importable, e.g. via PYTHONPATH)",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="SEGMIND_MAX_CONCURRENCY")
    parser.add_argument(
        "--repeat", type=int, default=1, help="run everything N times (fresh bot each time)"
    )
    parser.add_argument("--out", type=Path, help="the JSON report (default bench/results/…)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    return args


def say(text: str) -> None:
    print(text, flush=True)


async def run(args: argparse.Namespace, config: scenarios.Config, workdir: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    phases = set(args.phases)
    say("generating inputs (photo-like JPEGs, seeded) …")
    small = photo_like((1024, 1024))
    photo = photo_like((4000, 3000))
    say(f"  1024×1024: {len(small) / 1e6:.2f} MB, 4000×3000: {len(photo) / 1e6:.2f} MB")
    if phases & {"rss", "own", "ack", "throughput"}:
        members = max(*config.ack_levels, config.throughput_jobs, config.rss_jobs) + 50
        extra = {SLOW_CALLBACK_ENV: str(args.slow_callbacks)} if args.slow_callbacks else {}
        if not args.no_spans:
            extra[SPANS_ENV] = "1"
        if args.uvloop:
            extra[UVLOOP_ENV] = "1"
        if args.gc_freeze:
            extra[GC_FREEZE_ENV] = "1"
        if args.trace_loop:
            extra[TRACE_LOOP_ENV] = str(args.trace_loop)
        async with running(
            workdir / "bot", members=members, concurrency=args.concurrency, extra_env=extra
        ) as bench:
            say(f"bot running (pid {bench.bot.pid}, {bench.bot.bot_package}); warming up …")
            await scenarios.warm_up(bench, small)
            if "rss" in phases:
                say(f"[rss] {config.rss_jobs} photo jobs in flight …")
                results["rss"] = await scenarios.rss_in_flight(bench, photo, config)
                say(f"  peak RSS {results['rss']['peak_rss_mib']:.0f} MiB")
            if "own" in phases:
                for key, name, image in (
                    ("own_1024", "1024", small),
                    ("own_photo", "photo", photo),
                ):
                    say(f"[own] {name}: {config.per_job_reps} sequential jobs + floor …")
                    results[key] = await scenarios.own_time(bench, name, image, config)
                    r = results[key]
                    say(
                        f"  bot {r['median']['bot_own_ms']:.1f} ms, floor "
                        f"{r['floor']['total_ms']:.1f} ms, ratio {r['ratio']:.2f}"
                    )
            if "ack" in phases:
                say(f"[ack] {', '.join(map(str, config.ack_levels))} concurrent commands …")
                results["ack"] = await scenarios.acknowledge(bench, small, config)
                for level, data in results["ack"]["levels"].items():
                    say(
                        f"  {level}: p50 {data['p50_ms']:.1f} ms, p99 {data['p99_ms']:.1f} ms "
                        f"(stand-in's gateway p99 {data['gateway_p99_ms']:.1f} ms, then "
                        f"p99 {data['after_frame_p99_ms']:.1f} ms to the accepted deferral)"
                    )
            if "throughput" in phases:
                say(
                    f"[throughput] N={config.throughput_jobs}, C={args.concurrency}, "
                    f"d={config.throughput_delay} s …"
                )
                results["throughput"] = await scenarios.throughput(bench, small, config)
                say(f"  ratio {results['throughput']['ratio']:.3f}")
            results["bot_log_warnings"] = _log_problems(bench.bot.log_path)
    if "ledger" in phases:
        say(f"[ledger] {config.ledger_tasks} tasks × {config.ledger_pairs} pairs …")
        results["ledger"] = await scenarios.ledger(config)
    return results


def _log_problems(path: Path) -> list[str]:
    """WARNING/ERROR lines of the bot's log (a run with failures is not a valid measurement)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    noise = ("voice will NOT be supported",)  # PyNaCl/davey are not installed: no voice
    return [
        line
        for line in lines
        if (" WARNING " in line or " ERROR " in line) and not any(n in line for n in noise)
    ][:50]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = (
        scenarios.Config.quick()
        if args.quick
        else scenarios.Config.long()
        if args.long
        else scenarios.Config()
    )
    config = dataclasses.replace(config, profile=args.profile)
    logging.basicConfig(level=logging.WARNING)
    workdir = scenarios.tmpdir()
    started = time.monotonic()
    when = datetime.now(UTC)
    info = report.machine()
    say(
        f"sdbot bench, {when:%Y-%m-%d %H:%M} UTC, {info['nproc']}× {info['cpu']}, "
        f"Python {info['python']}, Pillow {info['pillow']}, discord.py {info['discord.py']}"
    )
    runs: list[dict[str, Any]] = []
    try:
        for n in range(args.repeat):
            if args.repeat > 1:
                say(f"=== run {n + 1} of {args.repeat} ===")
            runs.append(asyncio.run(run(args, config, workdir / f"run{n + 1}")))
    finally:
        if args.keep or args.profile:
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    figures = [report.headline(results) for results in runs]
    first: dict[str, float] = figures[0] if figures else {}
    medians = {k: statistics.median(f[k] for f in figures if k in f) for k in first}
    full = {
        "date": when.isoformat(),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
        "machine": info,
        "config": dataclasses.asdict(config) | {"concurrency": args.concurrency},
        "duration_s": time.monotonic() - started,
        "headline": medians,
        "verdicts": {k: report.verdict(k, v) for k, v in medians.items()},
        "targets": {k: {"target": t, "op": op} for k, (t, op) in report.TARGETS.items()},
        "headline_per_run": figures,
        "results": runs[0] if len(runs) == 1 else None,
        "runs": runs if len(runs) > 1 else None,
    }
    path = report.write(full, args.out)
    say("")
    say(f"{when:%Y-%m-%d}, {info['nproc']}× {info['cpu']}, load {info['load_average_at_start']}")
    for n, results in enumerate(runs):
        if len(runs) > 1:
            say(f"\nrun {n + 1}:")
        say(report.table(results))
        if results.get("bot_log_warnings"):
            count = len(results["bot_log_warnings"])
            say(f"(the bot logged {count} warning(s)/error(s); see the report)")
    if len(runs) > 1:
        say(f"\nmedians of {len(runs)} runs:")
        say(report.summary(figures))
    say(f"\nreport: {path} ({full['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
