"""Register the benchmark's source and models and open access to them.

Limits are set far above anything the benchmark can send, so the limiter
does its full work on every call (three windows checked and settled) but
never refuses one.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.load import APPLICATION, MESSAGES
from shared.client import ByomClient
from shared.errors import ByomError

SOURCE = "bench-provider"
MODEL = "bench-gpt"
PROVIDER_MODEL = "gpt-4o-mini"
API_KEY = "sk-fake-openai-key"
HIGH_LIMITS = {
    "enrollment": {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000},
    "user": {"rpm": 1_000_000_000, "tpm": 1_000_000_000_000},
}
VISIBLE_TIMEOUT_S = 30.0


def model_body(source_rid: str, name: str) -> dict[str, Any]:
    return {
        "source": source_rid,
        "name": name,
        "provider": "openai",
        "provider_model": PROVIDER_MODEL,
        "endpoints": [
            {
                "api": "openai_chat",
                "path": "/v1/chat/completions",
                "capabilities": ["streaming", "tool_calling"],
            }
        ],
        "limits": HIGH_LIMITS,
    }


async def register(admin: ByomClient, provider_url: str) -> str:
    """Create the source and the main model, enable access; return the source rid."""
    source = await admin.registry(
        "source.create",
        {
            "name": SOURCE,
            "base_url": provider_url,
            "auth": {"type": "bearer", "secret": API_KEY},
        },
    )
    await admin.registry("model.register", model_body(source["rid"], MODEL))
    await admin.registry("access.set", {"enabled": True, "groups": None})
    return str(source["rid"])


async def register_many(
    admin: ByomClient, source_rid: str, names: list[str], concurrency: int = 64
) -> float:
    """Register models concurrently; return the seconds it took."""
    queue = iter(names)
    began = time.perf_counter()

    async def worker() -> None:
        for name in queue:
            await admin.registry("model.register", model_body(source_rid, name))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began


async def wait_until_served(user: ByomClient, model: str) -> None:
    """Call the model until the router knows it (the event stream is async)."""
    deadline = time.monotonic() + VISIBLE_TIMEOUT_S
    request = {"model": model, "messages": MESSAGES}
    while True:
        try:
            await user.chat(request, application=APPLICATION, project="warm-up")
        except ByomError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
        else:
            return
