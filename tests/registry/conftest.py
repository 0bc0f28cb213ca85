"""Registry test helpers: bodies of valid sources and models, a shared gateway."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.client import ByomClient
from tests.harness import Gateway, gateway_settings

SECRET = "sk-registry-test-7f3a9c1e5b"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def source_body(name: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "name": name or unique("src"),
        "base_url": "https://api.example.com/v1",
        "auth": {"type": "bearer", "secret": SECRET},
        **fields,
    }


def model_body(source: str, name: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "source": source,
        "name": name or unique("model"),
        "provider": "openai",
        "provider_model": "gpt-4o-mini",
        "endpoints": [
            {
                "api": "openai_chat",
                "path": "/v1/chat/completions",
                "capabilities": ["streaming", "tool_calling"],
            }
        ],
        "limits": {"enrollment": {"rpm": 100, "tpm": 10_000}, "user": {"rpm": 10}},
        **fields,
    }


async def create_source(admin: ByomClient, **fields: Any) -> dict[str, Any]:
    return await admin.registry("source.create", source_body(**fields))


async def register_model(
    admin: ByomClient, source: str | None = None, **fields: Any
) -> dict[str, Any]:
    if source is None:
        source = (await create_source(admin))["rid"]
    return await admin.registry("model.register", model_body(source, **fields))


@pytest.fixture(scope="module")
async def shared_gateway(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Gateway]:
    """One gateway for a module whose tests never collide (unique names)."""
    running = Gateway(gateway_settings(nats_url, tmp_path_factory.mktemp("data")))
    await running.start(["registry"])
    yield running
    await running.stop()
