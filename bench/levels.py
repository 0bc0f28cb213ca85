"""One load level: drive it, then read CPU, memory and metering lag.

CPU is read from before the warm-up until metering has recorded every call
the level sent, so the per-request figure includes the usage event's whole
path, and is divided by every call sent (warm-up included).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import profile
from bench.cluster import SERVICES, Cluster, cpu_seconds, machine_busy_seconds
from bench.load import Call, Callers, drive
from shared.client import ByomClient

LAG_TIMEOUT_S = 10.0
LAG_POLL_S = 0.02


@dataclass
class Bench:
    """What every level needs: the cluster, an admin client and the callers."""

    cluster: Cluster
    admin: ByomClient
    callers: Callers
    args: argparse.Namespace
    source_rid: str


def per_request(
    before: dict[str, float], after: dict[str, float], requests: int
) -> dict[str, float]:
    """Turn two CPU readings into milliseconds per request, with the total."""
    ms = {
        name: (after[name] - before[name]) * 1000 / max(requests, 1) for name in after
    }
    ms["total"] = sum(ms[name] for name in SERVICES)
    return ms


def cpu_now(cluster: Cluster) -> dict[str, float]:
    return {**cluster.cpu(), "bench": cpu_seconds(os.getpid())}


def background_cores(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> float:
    """Return how many cores processes outside the benchmark kept busy.

    Other work on a shared machine slows every figure but CPU per request;
    reporting it says how much to trust the rest.
    """
    ours = sum(after[name] - before[name] for name in after if name != "machine")
    return (after["machine"] - before["machine"] - ours) / max(seconds, 1e-9)


async def metering_lag(
    admin: ByomClient, since: datetime, sent: int
) -> tuple[float | None, int]:
    """Wait until metering has recorded ``sent`` calls made since ``since``.

    Return the seconds it took (``None`` past the timeout) and the count seen.
    """
    ended = time.perf_counter()
    query = {"from": since.isoformat()}
    metered = 0
    while time.perf_counter() - ended < LAG_TIMEOUT_S:
        rows = (await admin.usage(query))["rows"]
        metered = sum(row["requests"] for row in rows)
        if metered >= sent:
            return time.perf_counter() - ended, metered
        await asyncio.sleep(LAG_POLL_S)
    return None, metered


async def gateway_level(
    bench: Bench,
    call: Call,
    concurrency: int,
    profile_dir: Path | None = None,
    seconds: tuple[float, float] | None = None,
) -> dict[str, Any]:
    """Drive the gateway; measure CPU from before warm-up to metering caught up.

    ``seconds`` is (warm-up, measured), by default from the command line.
    """
    args = bench.args
    warmup, duration = seconds or (args.warmup, args.duration)
    since = datetime.now(UTC)
    before = {**cpu_now(bench.cluster), "machine": machine_busy_seconds()}
    began = time.perf_counter()
    profiling = await profile.start(bench.cluster.pids, args, profile_dir)
    sample = await drive(call, concurrency, warmup, duration)
    # A call the gateway refused before the provider (the limiter timed out)
    # may never be metered, so only the calls that were answered are awaited.
    lag, metered = await metering_lag(bench.admin, since, sample.sent - sample.errors)
    after = {**cpu_now(bench.cluster), "machine": machine_busy_seconds()}
    await profile.finish(profiling)
    elapsed = time.perf_counter() - began
    return {
        **sample.summary(),
        "metering_lag_s": lag,
        "metered": metered,
        "background_cores": background_cores(before, after, elapsed),
        "cpu_ms_per_request": per_request(
            {k: v for k, v in before.items() if k != "machine"},
            {k: v for k, v in after.items() if k != "machine"},
            sample.sent,
        ),
    }


async def level(
    bench: Bench, kind: str, concurrency: int, profile_dir: Path | None
) -> dict[str, Any]:
    """Run one gateway level and the same direct level right after it."""
    callers, args = bench.callers, bench.args
    gateway_call = callers.gateway if kind == "chat" else callers.gateway_stream
    direct_call = callers.direct if kind == "chat" else callers.direct_stream
    gateway = await gateway_level(bench, gateway_call, concurrency, profile_dir)
    direct = (
        await drive(direct_call, concurrency, args.warmup, args.duration)
    ).summary()
    return {
        "kind": kind,
        "concurrency": concurrency,
        "gateway": gateway,
        "direct": direct,
        "added_ms_p50": gateway["latency_ms_p50"] - direct["latency_ms_p50"],
        "added_ms_p99": gateway["latency_ms_p99"] - direct["latency_ms_p99"],
        "metering_lag_s": gateway.pop("metering_lag_s"),
        "background_cores": gateway.pop("background_cores"),
        "cpu_ms_per_request": gateway.pop("cpu_ms_per_request"),
    }
