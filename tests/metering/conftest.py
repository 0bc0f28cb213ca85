"""Metering test fixtures: settings of their own, and the streams declared."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from shared import bus
from shared.settings import Settings
from tests.harness import Gateway, gateway_settings


@pytest.fixture
def settings(nats_url: str, tmp_path: Path) -> Settings:
    return gateway_settings(nats_url, tmp_path / "data")


@pytest.fixture
async def nc(settings: Settings) -> AsyncIterator[NatsClient]:
    """A connection to the test's NATS with the gateway's streams declared."""
    connection = await nats.connect(settings.nats_url)
    await bus.bootstrap(connection.jetstream(), Gateway(settings).subjects, 1)
    yield connection
    await connection.close()
