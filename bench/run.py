"""``python -m bench``: measure the gateway with limits, metering and tracing on.

One command starts a private NATS server, the bench provider and the four
services, registers a model, then drives load through ``byom.inference.chat``
at each concurrency level, each gateway level followed by the same level
made directly to the provider. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import profile, report, scale, setup
from bench.cluster import Cluster
from bench.levels import Bench, level
from bench.load import Callers
from services.router.providers.transport import AiohttpTransport
from shared.client import ByomClient

RESULTS = Path(__file__).parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    add = parser.add_argument
    add("--runs", type=int, default=3, help="runs to take medians over (3)")
    add("--duration", type=float, default=3.0, help="measured seconds per level")
    add("--warmup", type=float, default=0.5, help="warm-up seconds per level")
    add("--levels", default="1,32,128", help="concurrency levels, plain chat")
    add("--stream-levels", default="1,32", help="concurrency levels, streaming")
    add("--quick", action="store_true", help="one short run: a smoke test")
    add("--scale", action="store_true", help="also run the scale comparison")
    add("--models", type=int, default=10_000, help="models to register (--scale)")
    add("--users", type=int, default=100_000, help="distinct users (--scale)")
    add("--projects", type=int, default=1_000, help="distinct projects (--scale)")
    add("--scale-duration", type=float, default=30.0, help="seconds of scale load")
    add("--scale-concurrency", type=int, default=32)
    add("--profile", action="store_true",
        help="py-spy the services in the top level of the last run")  # fmt: skip
    add("--no-trace-export", action="store_true",
        help="create spans, export none (default: OTLP to the provider)")  # fmt: skip
    add("--keep", action="store_true", help="keep the temporary directory")
    add("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.runs, args.duration, args.warmup = 1, 1.0, 0.2
        args.scale_duration = min(args.scale_duration, 5.0)
    return args


def _levels(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


async def one_run(bench: Bench, number: int, profile_dir: Path | None) -> list[Any]:
    plan = [("chat", c) for c in _levels(bench.args.levels)]
    plan += [("stream", c) for c in _levels(bench.args.stream_levels)]
    top = max(plan, key=lambda step: step[1] if step[0] == "chat" else -1)
    results = []
    for kind, concurrency in plan:
        profiling = profile_dir if (kind, concurrency) == top else None
        result = await level(bench, kind, concurrency, profiling)
        report.console.print(
            f"run {number} {kind} x{concurrency}: "
            f"{result['gateway']['rps']:.0f} rps, "
            f"p50 {result['gateway']['latency_ms_p50']:.2f} ms, "
            f"cpu {result['cpu_ms_per_request']['total']:.2f} ms/req, "
            f"errors {result['gateway']['errors']}"
        )
        results.append(result)
    return results


@contextlib.asynccontextmanager
async def connected(cluster: Cluster, args: argparse.Namespace) -> AsyncIterator[Bench]:
    """Register the model and yield a ready ``Bench``; close clients after."""
    url, subjects = cluster.nats.url if cluster.nats else "", cluster.subjects
    admin = await ByomClient.connect(url, cluster.token("bench-admin", admin=True),
                                     subjects=subjects)  # fmt: skip
    user = ByomClient(admin.nc, cluster.token("bench-user"), subjects=subjects)
    # The same HTTP stack as the router's provider calls, so the direct
    # baseline is not slowed by a client the gateway does not use.
    http = httpx.AsyncClient(
        base_url=cluster.provider_url,
        transport=AiohttpTransport(max_connections=512),
        timeout=30,
    )
    try:
        source_rid = await setup.register(admin, cluster.provider_url)
        await setup.wait_until_served(user, setup.MODEL)
        callers = Callers(
            clients=lambda _: user,
            projects=lambda _: "bench-project",
            models=lambda _: setup.MODEL,
            http=http,
            provider_model=setup.PROVIDER_MODEL,
            provider_headers={"Authorization": f"Bearer {setup.API_KEY}"},
        )
        yield Bench(cluster, admin, callers, args, source_rid)
    finally:
        await http.aclose()
        await admin.close()


async def measure(cluster: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    """Run every level ``--runs`` times, then the scale run when asked."""
    async with connected(cluster, args) as bench:
        profile_dir = args.out / f"profile-{args.stamp}" if args.profile else None
        runs = []
        for number in range(1, args.runs + 1):
            last = number == args.runs
            runs.append(await one_run(bench, number, profile_dir if last else None))
        results: dict[str, Any] = {"runs": runs, "medians": report.medians(runs)}
        if args.scale:
            results["scale"] = await scale.run(bench)
        results["memory"] = cluster.memory()
        if profile_dir is not None:
            results["profile"] = profile.summarise_dir(profile_dir)
        return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root = Path(tempfile.mkdtemp(prefix="byom-bench-"))
    cluster = Cluster(root, trace_export=not args.no_trace_export)
    began = time.perf_counter()
    try:
        cluster.start()
        report.console.print(
            f"gateway up in {root} ({time.perf_counter() - began:.1f} s)"
        )
        results = asyncio.run(measure(cluster, args))
    finally:
        cluster.stop()
        if not args.keep:
            _remove(root)
    results.update(_about(args, time.perf_counter() - began))
    path = report.write(args.out, args.stamp, results)
    report.show(results)
    if "profile" in results:
        profile.show(results["profile"])
    report.console.print(f"results: {path}")
    return 0


def _about(args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    options = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {
        "started_at": args.stamp,
        "wall_s": round(seconds, 1),
        "options": options,
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "commit": _commit(),
    }


def _commit() -> str:
    """Name the code measured: the commit, marked when the tree has changes."""
    import subprocess

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], check=False, capture_output=True, text=True
        )
        return done.stdout.strip()

    dirty = git("status", "--porcelain", "--", "services", "shared")
    return git("rev-parse", "--short", "HEAD") + ("+changes" if dirty else "")


def _remove(root: Path) -> None:
    import shutil

    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
