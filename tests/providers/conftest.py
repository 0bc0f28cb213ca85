"""Shared fixtures: a pooled HTTP client, a fast retry policy, SDK validation."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from services.router.providers import ProviderCaller, ProviderSettings
from services.router.providers.transport import AiohttpTransport

FAST = ProviderSettings(
    timeout_s=0.5,
    connect_timeout_s=0.5,
    retry_budget_s=3.0,
    max_attempts=3,
    backoff_base_s=0.01,
    backoff_cap_s=0.05,
)


@pytest.fixture(params=["httpcore", "aiohttp"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Give each test a pooled client, closed afterwards.

    Every adapter test runs on httpx's own transport and on the aiohttp
    transport the router uses, so both behave the same to the adapters.
    """
    transport = AiohttpTransport() if request.param == "aiohttp" else None
    async with httpx.AsyncClient(transport=transport) as pooled:
        yield pooled


@pytest.fixture
def caller() -> ProviderCaller:
    """Retry fast so failure tests stay quick."""
    return ProviderCaller(FAST)


def valid_completion(reply: dict[str, Any]) -> dict[str, Any]:
    """Check the reply against the OpenAI SDK type and return it."""
    ChatCompletion.model_validate(reply)
    assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] >= 0
    return reply


def closing(chunks: AsyncIterator[dict[str, Any]]) -> Any:
    """Close a stream early, as the router does when its client goes away."""
    assert isinstance(chunks, AsyncGenerator)
    return aclosing(chunks)


async def collect(chunks: AsyncIterator[dict[str, Any]]) -> list[dict[str, Any]]:
    """Drain a stream, checking every chunk against the SDK type."""
    collected = []
    async for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
        collected.append(chunk)
    return collected


def streamed_text(chunks: list[dict[str, Any]], field: str = "content") -> str:
    """Join a delta field over all chunks."""
    return "".join(
        choice["delta"].get(field) or ""
        for chunk in chunks
        for choice in chunk["choices"]
    )


def streamed_tool_calls(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Assemble tool calls from their deltas, the way OpenAI clients do."""
    calls: dict[int, dict[str, Any]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or []:
                call = calls.setdefault(
                    delta["index"], {"id": None, "name": "", "arguments": ""}
                )
                call["id"] = delta.get("id") or call["id"]
                function = delta.get("function") or {}
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""
    return [calls[index] for index in sorted(calls)]


WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TIME_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time of a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
ANSWER_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
            "required": ["city", "celsius"],
            "additionalProperties": False,
        },
    },
}
