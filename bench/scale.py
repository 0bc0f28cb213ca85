"""The scale run: the same calls with many models, users and projects in play.

First a small level (one model, one user, one project) at the scale
concurrency, then ``--models`` models are registered through the registry,
then the same level runs with every call naming the next user, project and
model in turn, so each call opens windows the limiter has not seen. The
limiter's resident memory before and after gives MiB per 100,000 users'
windows.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from bench import setup
from bench.levels import Bench, gateway_level
from shared.client import ByomClient

USERS_PER_REPORT = 100_000


def _clients(bench: Bench, users: int) -> list[ByomClient]:
    """Mint one token per user up front, so the load pays no minting."""
    nc, subjects = bench.admin.nc, bench.cluster.subjects
    return [
        ByomClient(nc, bench.cluster.token(f"user-{i:06d}"), subjects=subjects)
        for i in range(users)
    ]


async def _register(bench: Bench, models: int) -> tuple[list[str], float]:
    names = [f"bench-scale-{i:05d}" for i in range(max(models - 1, 0))]
    seconds = await setup.register_many(bench.admin, bench.source_rid, names)
    if names:
        user = ByomClient(
            bench.admin.nc, bench.cluster.token("bench-user"),
            subjects=bench.cluster.subjects,
        )  # fmt: skip
        await setup.wait_until_served(user, names[-1])
    return [setup.MODEL, *names], seconds


async def run(bench: Bench) -> dict[str, Any]:
    """Compare cost per request with and without the data grown."""
    args = bench.args
    seconds = (args.warmup, args.scale_duration)
    small = await gateway_level(
        bench, bench.callers.gateway, args.scale_concurrency, seconds=seconds
    )
    models, register_s = await _register(bench, args.models)
    began = time.perf_counter()
    clients = _clients(bench, args.users)
    mint_s = time.perf_counter() - began
    projects = [f"project-{i:04d}" for i in range(args.projects)]

    callers = replace(
        bench.callers,
        clients=lambda s: clients[s % len(clients)],
        projects=lambda s: projects[s % len(projects)],
        models=lambda s: models[s % len(models)],
    )
    before = bench.cluster.memory()["limiter"]
    grown = await gateway_level(
        replace(bench, callers=callers), callers.gateway,
        args.scale_concurrency, seconds=seconds,
    )  # fmt: skip
    after = bench.cluster.memory()["limiter"]
    touched = min(grown["sent"], args.users)
    growth = after["rss_mib"] - before["rss_mib"]
    return {
        "models": len(models),
        "register_s": register_s,
        "mint_s": mint_s,
        "users": args.users,
        "users_touched": touched,
        "projects": args.projects,
        "small": small,
        "scale": grown,
        "limiter_memory": {
            "before_mib": before["rss_mib"],
            "after_mib": after["rss_mib"],
            "peak_mib": after["peak_rss_mib"],
            "mib_per_100k_users": growth / max(touched, 1) * USERS_PER_REPORT,
        },
    }
