"""Fixtures of the router tests: a fast-failing gateway, one fake per api."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.server import FakeServer
from tests.harness import Gateway, gateway_settings
from tests.router.kits import KITS, OPENAI, Kit

PROVIDER_TIMEOUT_S = 0.5
PROVIDER_ATTEMPTS = 2
# Small provider bounds keep the timeout and retry scenarios quick.
FAST_PROVIDER = {
    "provider_timeout_s": PROVIDER_TIMEOUT_S,
    "provider_connect_timeout_s": 0.5,
    "provider_retry_budget_s": 3.0,
    "provider_max_attempts": PROVIDER_ATTEMPTS,
}


@pytest.fixture
async def gateway(nats_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """All four services, with provider calls that give up within a second."""
    running = Gateway(gateway_settings(nats_url, tmp_path / "data", **FAST_PROVIDER))
    await running.start()
    yield running
    await running.stop()


@pytest.fixture(params=KITS, ids=str)
def kit(request: pytest.FixtureRequest) -> Kit:
    """Each endpoint api in turn."""
    chosen: Kit = request.param
    return chosen


@pytest.fixture
def openai_kit() -> Kit:
    """The OpenAI api, for scenarios that do not depend on the wire format."""
    return OPENAI


@pytest.fixture
async def provider(kit: Kit) -> AsyncIterator[FakeServer]:
    """The kit's strict fake, listening on a free port."""
    async with kit.fake() as server:
        yield server


@pytest.fixture
async def openai_provider(openai_kit: Kit) -> AsyncIterator[FakeServer]:
    """A strict fake OpenAI server."""
    async with openai_kit.fake() as server:
        yield server
