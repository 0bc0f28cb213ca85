"""Limiter benchmark: acquire throughput and latency with 10,000 users held.

``python -m bench.limiter [--runs 3] [--seconds 10] [--users 10000]``

Starts a private ``nats-server``, the registry (in this process, idle once
the models are registered) and one limiter as its own process, exactly as
deployed. It registers 16 models, opens the windows of ``--users`` users
(one acquire each, spread over the models and so over the partitions), then
drives acquires at concurrency 1 and 64 from one raw nats-py connection,
each grant settled at once as the router does. Every acquire is journaled
before its reply, so the figures include the JetStream round trip. The
result is the median of the runs, written to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from nats.aio.client import Client as NatsClient

from bench.cluster import cpu_seconds
from bench.load import drive
from bench.report import medians, write
from services.registry.app import build as build_registry
from shared.bus import connect
from shared.client import ByomClient
from shared.identity import mint_token
from shared.secrets import SecretBox
from shared.settings import Settings
from shared.subjects import Subjects, limiter_partition
from shared.transport import ERROR_HEADER
from tests.natsserver import NatsProcess

MODELS = 16
CONCURRENCIES = (1, 64)
WARMUP_S = 2.0
RESULTS = Path(__file__).parent / "results"
GENEROUS = {"enrollment": {"rpm": 10**9, "tpm": 10**12}, "user": {"rpm": 10**6}}
"""Limits no run reaches: every acquire is a grant, and does the full work."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.limiter")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--users", type=int, default=10_000)
    return parser.parse_args(argv)


class Acquirer:
    """Send acquires (and settle each grant) the way the router does."""

    def __init__(self, nc: NatsClient, subjects: Subjects, models: list[str]) -> None:
        self._nc = nc
        self._subjects = subjects
        self._models = models

    def party(self, user: int) -> tuple[str, str]:
        return self._models[user % len(self._models)], f"user-{user}"

    async def acquire(self, user: int) -> None:
        model, name = self.party(user)
        partition = limiter_partition(model)
        body = {"request_id": uuid.uuid4().hex, "model": model,
                "project": "bench", "user": name, "tokens": 500}  # fmt: skip
        reply = await self._nc.request(
            self._subjects.limiter_acquire_at(partition), orjson.dumps(body), 5.0
        )
        if reply.headers and ERROR_HEADER in reply.headers:
            raise RuntimeError(reply.data.decode())
        reservation = orjson.loads(reply.data)["reservation"]
        settlement = {"reservation": reservation, "model": model,
                      "project": "bench", "user": name, "tokens": 120}  # fmt: skip
        await self._nc.publish(
            self._subjects.limiter_settle_at(partition), orjson.dumps(settlement)
        )


def settings_for(root: Path, nats_url: str) -> Settings:
    return Settings(
        nats_url=nats_url,
        data_dir=root / "data",
        auth_secret=SecretBox.generate_key(),
        secret_key=SecretBox.generate_key(),
        subject_prefix="benchlim",
        stream_prefix="BENCHLIM_",
    )


def spawn_limiter(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "NATS_URL": settings.nats_url,
        "BYOM_SUBJECT_PREFIX": settings.subject_prefix,
        "BYOM_STREAM_PREFIX": settings.stream_prefix,
        "BYOM_AUTH_SECRET": settings.auth_secret or "",
        "BYOM_DATA_DIR": str(settings.data_dir),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.limiter"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def register_models(settings: Settings) -> list[str]:
    token = mint_token(settings.auth_secret or "", user="root", admin=True)
    subjects = Subjects(settings.subject_prefix, settings.stream_prefix)
    admin = await ByomClient.connect(settings.nats_url, token, subjects=subjects)
    source = await admin.registry(
        "source.create", {"name": "bench-src", "base_url": "http://127.0.0.1:9"}
    )
    rids = []
    for index in range(MODELS):
        model = await admin.registry(
            "model.register",
            {"source": source["rid"], "name": f"bench-{index}",
             "provider": "openai", "provider_model": "bench",
             "endpoints": [{"api": "openai_chat", "path": "/v1/chat/completions"}],
             "limits": GENEROUS},
        )  # fmt: skip
        rids.append(str(model["rid"]))
    await admin.close()
    return rids


async def wait_served(nc: NatsClient, subjects: Subjects, models: list[str]) -> None:
    """Wait until the limiter answers every model's partition."""
    deadline = time.monotonic() + 30
    for model in models:
        subject = subjects.limiter_acquire_at(limiter_partition(model))
        while True:
            try:
                await nc.request(subject, b"{}", timeout=1.0)
                break
            except Exception:  # not yet served, whatever the reason
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)


async def hold_users(acquirer: Acquirer, users: int) -> None:
    """Open every user's windows with one acquire each, 64 at a time."""
    for start in range(0, users, 64):
        await asyncio.gather(
            *(acquirer.acquire(u) for u in range(start, min(start + 64, users)))
        )


@asynccontextmanager
async def private_limiter(root: Path) -> AsyncIterator[tuple[Settings, int]]:
    """Yield settings and the limiter's pid, with NATS and a registry up."""
    server = NatsProcess(root / "nats")
    server.start()
    settings = settings_for(root, server.url)
    registry = build_registry(settings)
    await registry.start()
    limiter = spawn_limiter(settings, root / "limiter.log")
    try:
        yield settings, limiter.pid
    finally:
        limiter.terminate()
        limiter.wait(timeout=15)
        await registry.stop()
        server.stop()


async def one_run(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    async with private_limiter(root) as (settings, pid):
        models = await register_models(settings)
        subjects = Subjects(settings.subject_prefix, settings.stream_prefix)
        nc = await connect(settings, "bench-limiter")
        await wait_served(nc, subjects, models)
        acquirer = Acquirer(nc, subjects, models)
        await hold_users(acquirer, args.users)
        levels = [await level(acquirer, args, c, pid) for c in CONCURRENCIES]
        await nc.close()
    return levels


async def level(
    acquirer: Acquirer, args: argparse.Namespace, concurrency: int, pid: int
) -> dict[str, Any]:
    async def call(_: int) -> float | None:
        await acquirer.acquire(random.randrange(args.users))
        return None

    cpu_before = cpu_seconds(pid)
    sample = await drive(call, concurrency, WARMUP_S, args.seconds)
    summary = sample.summary()
    cpu = cpu_seconds(pid) - cpu_before
    summary["limiter_cpu_per_acquire_ms"] = 1000 * cpu / max(sample.sent, 1)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = []
    for number in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-limiter-") as root:
            runs.append(asyncio.run(one_run(args, Path(root))))
        print(f"run {number + 1}: {runs[-1]}")
    table = medians(runs)
    for row in table:
        print(
            f"concurrency {row['concurrency']:>3}: {row['rps']:8.0f} acquires/s  "
            f"p50 {row['latency_ms_p50']:6.2f} ms  p99 {row['latency_ms_p99']:6.2f} ms"
            f"  limiter CPU {row['limiter_cpu_per_acquire_ms']:.3f} ms/acquire"
            f"  errors {row['errors']}"
        )
    about = {"users": args.users, "models": MODELS, "seconds": args.seconds}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    results = {"about": about, "runs": runs, "medians": table}
    path = write(RESULTS, f"limiter-{stamp}", results)
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
