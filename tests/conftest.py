"""Fixtures shared by every test: a NATS server, gateways, fake providers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from shared.logs import configure_logging
from tests.harness import Gateway, gateway_settings
from tests.natsserver import nats_server


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A NATS server with JetStream for the whole test session."""
    configure_logging("tests", "INFO")
    with nats_server(tmp_path_factory.mktemp("nats")) as url:
        yield url


@pytest.fixture
async def gateway(nats_url: str, tmp_path: Path) -> AsyncIterator[Gateway]:
    """All four services, started in this event loop, isolated by prefix."""
    running = Gateway(gateway_settings(nats_url, tmp_path / "data"))
    await running.start()
    yield running
    await running.stop()
