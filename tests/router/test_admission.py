"""Refusals before any quota is taken, and failing closed without a limiter."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import CapabilityUnsupported, Unavailable
from tests.fakes.server import FakeServer
from tests.harness import Gateway
from tests.router.kits import Kit
from tests.router.scene import APP, ask, enroll, event_of, new_request_id

ONE_A_MINUTE = {"enrollment": {"rpm": 1}, "user": {"rpm": 1}}
TOOL = {
    "type": "function",
    "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}},
}
SCHEMA = {
    "type": "json_schema",
    "json_schema": {"name": "answer", "schema": {"type": "object"}},
}
IMAGE = [
    {"type": "text", "text": "What is this?"},
    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
]


@pytest.mark.parametrize(
    ("fields", "capability"),
    [
        ({"stream": True}, "streaming"),
        ({"tools": [TOOL]}, "tool_calling"),
        ({"response_format": SCHEMA}, "structured_outputs"),
        ({"reasoning_effort": "low"}, "reasoning"),
        ({"messages": [{"role": "user", "content": IMAGE}]}, "vision"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_an_undeclared_capability_is_refused_before_quota_is_taken(
    gateway: Gateway,
    openai_kit: Kit,
    openai_provider: FakeServer,
    fields: dict[str, Any],
    capability: str,
) -> None:
    """The refusal names the capability; rpm 1 still admits the next call."""
    scene = await enroll(
        gateway, openai_kit, openai_provider, capabilities=[], limits=ONE_A_MINUTE
    )
    request_id = new_request_id()

    with pytest.raises(CapabilityUnsupported) as caught:
        await scene.user.chat(ask(**fields), **APP, request_id=request_id)

    assert caught.value.extra["capability"] == capability
    assert capability in caught.value.message
    assert openai_provider.requests == []
    await scene.chat(ask())
    assert len(openai_provider.requests) == 1
    event = event_of(await scene.usage_events(2), request_id)
    assert (event["status"], event["error_code"]) == (
        "error",
        "capability_unsupported",
    )


async def test_without_a_limiter_the_router_refuses_and_calls_no_provider(
    gateway: Gateway, openai_kit: Kit, openai_provider: FakeServer
) -> None:
    """Limits are never skipped: no limiter means ``unavailable``."""
    scene = await enroll(gateway, openai_kit, openai_provider)
    [limiter] = [s for s in gateway.services if s.name == "limiter"]
    await limiter.stop()
    gateway.services.remove(limiter)
    request_id = new_request_id()

    with pytest.raises(Unavailable, match="rate limiter"):
        await scene.user.chat(ask(), **APP, request_id=request_id)

    assert openai_provider.requests == []
    event = event_of(await scene.usage_events(1), request_id)
    assert (event["status"], event["error_code"]) == ("error", "unavailable")


async def test_capabilities_split_across_endpoints_are_refused_together(
    gateway: Gateway, openai_kit: Kit, openai_provider: FakeServer
) -> None:
    """Each endpoint alone lacks one: the refusal names the first in order."""
    endpoints = [
        {"api": "openai_chat", "path": "/v1/chat/completions", "capabilities": caps}
        for caps in (["tool_calling"], ["streaming"])
    ]
    scene = await enroll(gateway, openai_kit, openai_provider, endpoints=endpoints)

    with pytest.raises(CapabilityUnsupported) as caught:
        await scene.stream(ask(stream=True, tools=[TOOL]))

    assert caught.value.extra["capability"] == "streaming"
    assert "together with tool_calling" in caught.value.message
    assert openai_provider.requests == []
