"""The machine, the targets, the table and the JSON report."""

from __future__ import annotations

import json
import os
import platform
import sqlite3
import statistics
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

# name → (target, "<=" or ">="), as the issue states them.
TARGETS: dict[str, tuple[float, str]] = {
    "ack_p99_200_ms": (100.0, "<="),
    "own_ratio_1024": (2.0, "<="),
    "own_ratio_photo": (2.0, "<="),
    "throughput_ratio": (0.9, ">="),
    "loop_stall_max_ms": (50.0, "<="),
    "ledger_pairs_per_s": (2000.0, ">="),
    "peak_rss_mb": (300.0, "<="),
}
MIB_IN_MB = 2**20 / 10**6
LABELS = {
    "ack_p99_200_ms": "time to acknowledge, p99 at 200 concurrent (ms)",
    "own_ratio_1024": "bot's own time ÷ floor, 1024×1024 JPEG",
    "own_ratio_photo": "bot's own time ÷ floor, 4000×3000 JPEG",
    "throughput_ratio": "throughput ÷ ideal, N=40 C=4 d=0.5 s",
    "loop_stall_max_ms": "longest event-loop stall under load (ms)",
    "ledger_pairs_per_s": "ledger hold→capture pairs/s (FULL, 100 tasks)",
    "peak_rss_mb": "peak RSS with 50 photo jobs in flight (MB)",
}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": mem_gib,
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "pillow": version("pillow"),
        "discord.py": version("discord.py"),
        "aiohttp": version("aiohttp"),
        "aiosqlite": version("aiosqlite"),
        "sqlite": sqlite3.sqlite_version,
        "load_average_at_start": list(os.getloadavg()),
    }


def verdict(name: str, value: float) -> str:
    target, op = TARGETS[name]
    ok = value <= target if op == "<=" else value >= target
    return "met" if ok else "MISSED"


def headline(results: dict[str, Any]) -> dict[str, float]:
    """The figures that have targets, from the phases' results (missing phases are skipped)."""
    out: dict[str, float] = {}
    if "ack" in results:
        out["ack_p99_200_ms"] = results["ack"]["levels"].get("200", {}).get("p99_ms", float("nan"))
    for key, name in (("own_1024", "own_ratio_1024"), ("own_photo", "own_ratio_photo")):
        if key in results:
            out[name] = results[key]["ratio"]
    if "throughput" in results:
        out["throughput_ratio"] = results["throughput"]["ratio"]
    stalls = [s["max_ms"] for s in load_stalls(results).values()]
    if stalls:
        out["loop_stall_max_ms"] = max(stalls)
    if "ledger" in results and "FULL" in results["ledger"]:
        out["ledger_pairs_per_s"] = results["ledger"]["FULL"]["median"]
    if "rss" in results:
        out["peak_rss_mb"] = results["rss"]["peak_rss_mib"] * MIB_IN_MB
    return out


def load_stalls(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The loop-stall window of every load phase."""
    out: dict[str, dict[str, Any]] = {}
    for level, data in results.get("ack", {}).get("levels", {}).items():
        if level != "1":
            out[f"ack {level}"] = data["stall"]
    if "throughput" in results:
        out["throughput"] = results["throughput"]["stall"]
    if "rss" in results:
        out[f"{results['rss']['jobs']} photos in flight"] = results["rss"]["stall"]
    return out


def table(results: dict[str, Any]) -> str:
    """The human-readable table (Markdown), as pasted into the README."""
    rows: list[tuple[str, str, str, str]] = []

    def add(what: str, value: str, target: str = "", status: str = "") -> None:
        rows.append((what, value, target, status))

    if "ack" in results:
        for level, data in results["ack"]["levels"].items():
            is_target = level == "200"
            add(
                f"time to acknowledge, {level} concurrent (p50 / p99)",
                f"{data['p50_ms']:.1f} / {data['p99_ms']:.1f} ms ({data['commands']} commands)",
                "p99 ≤ 100 ms" if is_target else "",
                verdict("ack_p99_200_ms", data["p99_ms"]) if is_target else "",
            )
    for key, label, name in (
        ("own_1024", "1024×1024 JPEG", "own_ratio_1024"),
        ("own_photo", "4000×3000 JPEG", "own_ratio_photo"),
    ):
        if key in results:
            r = results[key]
            m, f = r["median"], r["floor"]
            add(
                f"bot's own time per job, {label} (→ {r['request_size'][0]}×"
                f"{r['request_size'][1]})",
                f"{m['bot_own_ms']:.1f} ms vs floor {f['total_ms']:.1f} ms = {r['ratio']:.2f}×",
                "≤ 2× floor",
                verdict(name, r["ratio"]),
            )
    if "throughput" in results:
        t = results["throughput"]
        walls = ", ".join(f"{x['wall_s']:.2f}" for x in t["runs"])
        add(
            f"throughput, N={t['jobs']} C={t['concurrency']} d={t['upstream_delay_s']} s",
            f"{t['ratio']:.3f} of ideal {t['ideal_s']:.1f} s (wall {walls} s)",
            "≥ 0.9",
            verdict("throughput_ratio", t["ratio"]),
        )
    stalls = load_stalls(results)
    if stalls:
        worst = max(stalls.items(), key=lambda kv: kv[1]["max_ms"])
        detail = ", ".join(f"{k} {v['max_ms']:.0f}" for k, v in stalls.items())
        add(
            "longest event-loop stall under load",
            f"{worst[1]['max_ms']:.1f} ms ({detail} ms)",
            "≤ 50 ms",
            verdict("loop_stall_max_ms", worst[1]["max_ms"]),
        )
    if "ledger" in results:
        led = results["ledger"]
        for sync in ("FULL", "NORMAL"):
            if sync in led:
                runs = ", ".join(f"{x:,.0f}" for x in led[sync]["runs"])
                is_target = sync == "FULL"
                add(
                    f"ledger hold→capture pairs/s, {led['tasks']} tasks, synchronous={sync}",
                    f"{led[sync]['median']:,.0f} ({runs})",
                    "≥ 2,000" if is_target else "",
                    verdict("ledger_pairs_per_s", led[sync]["median"]) if is_target else "",
                )
    if "rss" in results:
        r = results["rss"]
        mb = r["peak_rss_mib"] * MIB_IN_MB
        add(
            f"peak RSS, {r['jobs']} photo jobs in flight",
            f"{mb:.0f} MB = {r['peak_rss_mib']:.0f} MiB (idle {r['rss_before_mib']:.0f} MiB)",
            "≤ 300 MB",
            verdict("peak_rss_mb", mb),
        )
    head = ("figure", "measured", "target", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(head, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)


def summary(runs: list[dict[str, float]]) -> str:
    """Median (min–max) of each headline figure over repeated runs, as a Markdown table."""
    lines = ["| figure | median of runs | runs | target | |", "|---|---|---|---|---|"]
    for name, (target, op) in TARGETS.items():
        values = [run[name] for run in runs if name in run]
        if not values:
            continue
        mid = statistics.median(values)
        shown = ", ".join(f"{v:,.2f}" if v < 10 else f"{v:,.0f}" for v in values)
        fmt = f"{mid:,.2f}" if mid < 10 else f"{mid:,.0f}"
        lines.append(
            f"| {LABELS[name]} | {fmt} | {shown} | {op} {target:g} | {verdict(name, mid)} |"
        )
    return "\n".join(lines)


def write(report: dict[str, Any], out: Path | None) -> Path:
    if out is None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out = RESULTS / f"bench-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return out
