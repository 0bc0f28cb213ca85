"""Three routers and two limiter processes: bursts admit exactly the limit.

The limiters run as OS processes (``python -m services.limiter``) so that
one can be killed with SIGKILL in the middle of a burst; registry, metering
and three routers run in the test's event loop. Every call reserves the
same number of tokens and the fake provider reports exactly that usage, so
settlements change nothing and the tpm limits can be checked exactly.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import KeyNotFoundError

from services.router.providers.capabilities import estimate_prompt_tokens
from shared.bus import connect
from shared.client import ByomClient
from shared.errors import ByomError
from shared.settings import Settings
from shared.subjects import LIMITER_PARTITIONS, limiter_partition
from tests.fakes.openai import API_KEY, FakeOpenAI, text
from tests.fakes.server import Recorded, Reply
from tests.harness import AUTH_SECRET, Gateway, gateway_settings
from tests.limiter.test_service import caught_up
from tests.processes import ServiceProcess, quiet_environment

OUTPUT = 100
CHAT = {
    "model": "",
    "messages": [{"role": "user", "content": "Count to three."}],
    "max_completion_tokens": OUTPUT,
}
RESERVED = estimate_prompt_tokens(CHAT) + OUTPUT
"""What every call of these tests reserves, and the usage it settles to."""
CLIENTS = 3
PER_CLIENT = 100


class ExactProvider(FakeOpenAI):
    """Report exactly the reservation as usage, so settling frees nothing."""

    def default_reply(self, request: Recorded) -> Reply:
        prompt = RESERVED - OUTPUT
        return text("one, two, three", prompt=prompt, completion=OUTPUT)


class LimiterProcess(ServiceProcess):
    """``python -m services.limiter`` for one gateway's prefixes."""

    def __init__(self, settings: Settings, log: Path) -> None:
        env = quiet_environment(
            {
                "NATS_URL": settings.nats_url,
                "BYOM_SUBJECT_PREFIX": settings.subject_prefix,
                "BYOM_STREAM_PREFIX": settings.stream_prefix,
                "BYOM_AUTH_SECRET": AUTH_SECRET,
                "BYOM_DATA_DIR": str(settings.data_dir),
            }
        )
        super().__init__("limiter", env, log)

    def stop(self) -> None:
        """Stop on SIGTERM, as deployed; a limiter that hangs fails the test."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"{self.instance} ignored SIGTERM") from None


@dataclass
class Cluster:
    gateway: Gateway
    limiters: list[LimiterProcess]
    nc: NatsClient
    provider: ExactProvider
    admin: ByomClient
    users: list[ByomClient]

    async def owners(self) -> dict[int, str]:
        """Return each partition's lease holder, as the owners bucket says."""
        bucket = await self.nc.jetstream().key_value(
            self.gateway.subjects.limiter_owners_bucket
        )
        found = {}
        for index in range(LIMITER_PARTITIONS):
            try:
                entry = await bucket.get(f"p.{index}")
            except KeyNotFoundError:
                continue
            found[index] = (entry.value or b"").decode()
        return found

    async def wait_until_served(self, owners: int, timeout: float = 30) -> None:
        """Wait until every partition answers and ``owners`` replicas share them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            served = await self.served()
            held = set((await self.owners()).values())
            if served == LIMITER_PARTITIONS and len(held) == owners:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"limiter partitions never all served by {owners}")

    async def served(self) -> int:
        replies = await asyncio.gather(
            *(self.answers(index) for index in range(LIMITER_PARTITIONS))
        )
        return sum(replies)

    async def time_to_answer(self, index: int) -> float:
        """Return how long a partition takes to answer again, polling."""
        started = time.monotonic()
        for _ in range(1000):
            if await self.answers(index):
                return time.monotonic() - started
            await asyncio.sleep(0.01)
        raise AssertionError(f"partition {index} never answered again")

    async def answers(self, index: int) -> bool:
        """Tell whether a partition's owner answers (an invalid body will do)."""
        subject = self.gateway.subjects.limiter_acquire_at(index)
        try:
            await self.nc.request(subject, b"{}", timeout=0.5)
        except (NoRespondersError, NatsTimeout):
            return False
        return True


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("replicas")


@pytest.fixture(scope="module")
def settings(nats_url: str, tmp_module: Path) -> Settings:
    return gateway_settings(nats_url, tmp_module / "data")


@pytest.fixture(scope="module")
def limiters(settings: Settings, tmp_module: Path) -> Iterator[list[LimiterProcess]]:
    processes = [
        LimiterProcess(settings, tmp_module / f"limiter-{i}.log") for i in range(2)
    ]
    yield processes
    for process in processes:
        process.stop()


@pytest.fixture(scope="module")
async def cluster(
    settings: Settings, limiters: list[LimiterProcess]
) -> AsyncIterator[Cluster]:
    gateway = Gateway(settings)
    await gateway.start(["registry", "metering", "router", "router", "router"])
    for process in limiters:
        process.start()
    async with ExactProvider() as provider:
        admin = await gateway.client("root", admin=True)
        await admin.registry("access.set", {"enabled": True, "groups": None})
        users = [await gateway.client("alice") for _ in range(CLIENTS)]
        nc = await connect(settings, "replicas-test")
        running = Cluster(gateway, limiters, nc, provider, admin, users)
        await running.wait_until_served(owners=2)
        yield running
        await nc.close()
    await gateway.stop()


async def register(cluster: Cluster, limits: dict[str, Any]) -> tuple[str, str]:
    """Register a fresh model on the fake provider; return its rid and name."""
    name = f"m-{uuid.uuid4().hex[:8]}"
    source = await cluster.admin.registry(
        "source.create",
        {
            "name": f"{name}-src",
            "base_url": cluster.provider.base_url,
            "auth": {"type": "bearer", "secret": API_KEY},
        },
    )
    model = await cluster.admin.registry(
        "model.register",
        {
            "source": source["rid"],
            "name": name,
            "provider": "openai",
            "provider_model": "gpt-4o-mini",
            "endpoints": [{"api": "openai_chat", "path": "/v1/chat/completions"}],
            "limits": limits,
        },
    )
    return str(model["rid"]), name


async def one_call(user: ByomClient, model: str, application: str, project: str) -> str:
    """Return the outcome of one chat: ok, or the error code."""
    try:
        await user.chat({**CHAT, "model": model}, application=application,
                        project=project, timeout=30)  # fmt: skip
    except ByomError as exc:
        scope = exc.extra.get("scope")
        return f"{exc.code}:{scope}" if scope else exc.code
    return "ok"


async def burst(
    cluster: Cluster, model: str, application: str, projects: list[str]
) -> Counter[str]:
    """Send ``CLIENTS`` x ``PER_CLIENT`` calls at once; count the outcomes."""
    calls = [
        one_call(user, model, application, projects[i % len(projects)])
        for i, user in enumerate(cluster.users)
        for _ in range(PER_CLIENT)
    ]
    return Counter(await asyncio.gather(*calls))


LEVELS = {
    # level: (model limits, project limits or None, application, projects, limit)
    "enrollment rpm": ({"enrollment": {"rpm": 50}, "user": {"rpm": 1000}},
                       None, "aip-logic", ["pa", "pb", "pc"], 50),
    "project rpm": ({"enrollment": {"rpm": 1000}, "user": {"rpm": 1000}},
                    {"rpm": 40}, "aip-logic", ["pa"], 40),
    "user rpm": ({"enrollment": {"rpm": 1000}, "user": {"rpm": 30}},
                 None, "workshop", ["pa", "pb", "pc"], 30),
    "enrollment tpm": ({"enrollment": {"tpm": 51 * RESERVED - 1},
                        "user": {"rpm": 1000}},
                       None, "aip-logic", ["pa", "pb", "pc"], 50),
    "project tpm": ({"enrollment": {"rpm": 1000}, "user": {"rpm": 1000}},
                    {"tpm": 41 * RESERVED - 1}, "aip-logic", ["pa"], 40),
    "user tpm": ({"enrollment": {"rpm": 1000}, "user": {"tpm": 31 * RESERVED - 1}},
                 None, "workshop", ["pa", "pb", "pc"], 30),
}  # fmt: skip


@pytest.mark.parametrize("level", list(LEVELS))
async def test_a_burst_through_three_routers_admits_exactly_the_limit(
    cluster: Cluster, level: str
) -> None:
    limits, project_limits, application, projects, limit = LEVELS[level]
    rid, name = await register(cluster, limits)
    if project_limits is not None:
        await cluster.admin.registry(
            "project_limits.set", {"model": rid, "project": "pa", **project_limits}
        )
    await caught_up(cluster.gateway)

    outcomes = await burst(cluster, name, application, projects)

    scope = level.split(maxsplit=1)[0]
    print(f"\nLEVEL {level}: admitted {outcomes['ok']} of limit {limit} {outcomes}")
    refused = {k: n for k, n in outcomes.items() if k.startswith("rate_limited")}
    assert outcomes["ok"] == limit
    assert sum(refused.values()) == CLIENTS * PER_CLIENT - limit
    # Projects also fill up when the enrollment is what binds in total.
    assert f"rate_limited:{scope}" in refused


async def test_killing_a_limiter_mid_burst_neither_resets_nor_overshoots(
    cluster: Cluster,
) -> None:
    limit = 200
    limits = {"enrollment": {"rpm": limit}, "user": {"rpm": 1000}}
    rid, name = await register(cluster, limits)
    await caught_up(cluster.gateway)
    partition = limiter_partition(rid)
    owner = (await cluster.owners())[partition]
    victim = next(p for p in cluster.limiters if p.instance == owner)

    first = asyncio.create_task(
        paced_burst(cluster, name, ["pa", "pb", "pc", "pd"], 0.004)
    )
    await asyncio.sleep(0.3)
    victim.kill()
    failover_s = await cluster.time_to_answer(partition)
    during = await first
    after = await paced_burst(cluster, name, ["pa", "pb", "pc", "pd"], 0.0)

    print(f"\nFAILOVER {failover_s:.2f} s; during {dict(during)}; after {dict(after)}")
    victim.start()
    await cluster.wait_until_served(owners=2)
    assert during["ok"] + after["ok"] == limit
    assert failover_s < 5


async def paced_burst(
    cluster: Cluster, model: str, projects: list[str], pace_s: float
) -> Counter[str]:
    """Start the calls ``pace_s`` apart, so that a burst spans a failover."""
    tasks = []
    for i in range(CLIENTS * PER_CLIENT):
        user = cluster.users[i % CLIENTS]
        project = projects[i % len(projects)]
        tasks.append(asyncio.create_task(one_call(user, model, "aip-logic", project)))
        if pace_s:
            await asyncio.sleep(pace_s)
    return Counter(await asyncio.gather(*tasks))


async def test_the_only_limiter_killed_and_restarted_keeps_its_windows(
    cluster: Cluster,
) -> None:
    limits = {"enrollment": {"rpm": 20}, "user": {"rpm": 1000}}
    _, name = await register(cluster, limits)
    await caught_up(cluster.gateway)
    before = await burst(cluster, name, "aip-logic", ["pa", "pb", "pc"])

    for process in cluster.limiters:
        process.kill()
    cluster.limiters[0].start()
    await cluster.wait_until_served(owners=1)
    after = await burst(cluster, name, "aip-logic", ["pa", "pb", "pc"])
    cluster.limiters[1].start()
    await cluster.wait_until_served(owners=2)

    assert before["ok"] == 20
    assert after == {"rate_limited:enrollment": CLIENTS * PER_CLIENT}
