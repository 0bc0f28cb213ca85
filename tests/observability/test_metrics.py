"""Each service serves Prometheus metrics on a port of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.errors import RateLimited
from shared.metrics import metrics_port
from tests.e2e.test_walking_skeleton import HELLO, register, wait_for_usage
from tests.fakes.openai import FakeOpenAI, text
from tests.harness import Gateway, gateway_settings
from tests.processes import free_ports

SERVICES = ("registry", "limiter", "metering", "router")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture
async def ports(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Gateway, dict[str, int]]]:
    chosen = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    for name, port in chosen.items():
        monkeypatch.setenv(f"BYOM_{name.upper()}_METRICS_PORT", str(port))
    gateway = Gateway(gateway_settings(nats_url, tmp_path / "data"))
    await gateway.start()
    yield gateway, chosen
    await gateway.stop()


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"http://127.0.0.1:{port}/metrics")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_the_router_counts_requests_tokens_rate_limits_and_latency(
    ports: tuple[Gateway, dict[str, int]],
) -> None:
    gateway, chosen = ports
    admin = await gateway.client("root", admin=True)
    async with FakeOpenAI() as provider:
        await register(admin, provider, rpm=1)
        await admin.registry("access.set", {"enabled": True, "groups": None})
        provider.queue(text("Hi.", prompt=21, completion=5))
        user = await gateway.client("alice")
        await user.chat(HELLO, application="workshop", project="p")
        with pytest.raises(RateLimited):
            await user.chat(HELLO, application="workshop", project="p")
        await wait_for_usage(admin, 2)

    router = await scrape(chosen["router"])
    chat = gateway.subjects.inference_chat
    assert value(router, "byom_requests_total", subject=chat, outcome="ok") == 1
    assert (
        value(router, "byom_requests_total", subject=chat, outcome="rate_limited") == 1
    )
    assert value(router, "byom_tokens_total", model="house-gpt", kind="prompt") == 21
    assert value(router, "byom_tokens_total", model="house-gpt", kind="completion") == 5
    assert (
        value(router, "byom_rate_limited_total", scope="enrollment", limit="rpm") == 1
    )
    assert (
        value(
            router,
            "byom_provider_latency_seconds_count",
            provider="openai",
            outcome="ok",
        )
        == 1
    )


async def test_metering_reports_stored_events_and_its_backlog(
    ports: tuple[Gateway, dict[str, int]],
) -> None:
    gateway, chosen = ports
    admin = await gateway.client("root", admin=True)
    async with FakeOpenAI() as provider:
        await register(admin, provider)
        await admin.registry("access.set", {"enabled": True, "groups": None})
        user = await gateway.client("alice")
        await user.chat(HELLO, application="workshop", project="p")
        await wait_for_usage(admin, 1)

    metering = await scrape(chosen["metering"])
    assert value(metering, "byom_metering_events_total", result="stored") == 1
    assert value(metering, "byom_metering_consumer_pending") is not None
    limiter = await scrape(chosen["limiter"])
    acquire = gateway.subjects.limiter_acquire
    # The limiter may serve acquire on one subject per partition.
    acquired = [
        count
        for (name, labels), count in limiter.items()
        if name == "byom_requests_total"
        and ("outcome", "ok") in labels
        and dict(labels)["subject"].startswith(acquire)
    ]
    assert sum(acquired) == 1


def test_the_metrics_port_is_per_service_with_a_shared_fallback() -> None:
    env = {"BYOM_METRICS_PORT": "9400", "BYOM_ROUTER_METRICS_PORT": "9401"}
    assert metrics_port("router", env) == 9401
    assert metrics_port("limiter", env) == 9400
    assert metrics_port("metering", {}) == 0
    with pytest.raises(ValueError, match="BYOM_METERING_METRICS_PORT"):
        metrics_port("metering", {"BYOM_METRICS_PORT": "ninety"})
