"""A registered model on a fake provider, and what the gateway did with it.

``enroll`` registers a source and a model on a kit's fake and enables
access; the returned ``Scene`` chats as a user and reads the usage stream
the router published to, so tests can count events by request id.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any, TypedDict

import nats
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from shared.client import ByomClient
from tests.fakes.server import FakeServer
from tests.harness import Gateway
from tests.router.kits import Kit

MODEL = "house-model"


class Caller(TypedDict):
    """The application and project headers of an inference call."""

    application: str
    project: str


APP: Caller = {"application": "workshop", "project": "proj-a"}
ALL_CAPABILITIES = ["streaming", "tool_calling", "structured_outputs", "reasoning"]
GENEROUS = {"enrollment": {"rpm": 1000, "tpm": 1_000_000}, "user": {"rpm": 1000}}


def ask(text: str = "Hi", **fields: Any) -> dict[str, Any]:
    """Build a chat request to the scene's model."""
    return {"model": MODEL, "messages": [{"role": "user", "content": text}], **fields}


@dataclass
class Scene:
    """A gateway with one model registered on a fake provider."""

    gateway: Gateway
    kit: Kit
    provider: FakeServer
    admin: ByomClient
    user: ByomClient
    model: dict[str, Any]

    async def chat(self, request: dict[str, Any], **headers: Any) -> dict[str, Any]:
        """Chat as the user; check the reply against the OpenAI SDK type."""
        reply = await self.user.chat(request, **{**APP, **headers})
        ChatCompletion.model_validate(reply)
        return reply

    async def stream(
        self, request: dict[str, Any], *, request_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Stream a chat to its end; check every chunk against the SDK type."""
        chunks = []
        stream = self.user.chat_stream(request, **APP, request_id=request_id)
        async with aclosing(stream):
            async for chunk in stream:
                ChatCompletionChunk.model_validate(chunk)
                chunks.append(chunk)
        return chunks

    async def usage_events(
        self, expected: int, timeout_s: float = 5.0
    ) -> list[dict[str, Any]]:
        """Read the usage stream until ``expected`` events, then a moment more."""
        return await read_usage_events(self.gateway, expected, timeout_s)


async def enroll(
    gateway: Gateway,
    kit: Kit,
    provider: FakeServer,
    *,
    capabilities: list[str] | None = None,
    endpoints: list[dict[str, Any]] | None = None,
    limits: dict[str, Any] | None = None,
    max_output_tokens: int | None = None,
) -> Scene:
    """Register the kit's source and a model on it; enable access for all."""
    admin = await gateway.client("root", admin=True)
    source = await admin.registry(
        "source.create",
        {"name": "house-source", "base_url": provider.base_url, "auth": kit.auth},
    )
    fields: dict[str, Any] = {
        "source": source["rid"],
        "name": MODEL,
        "provider": kit.provider,
        "provider_model": kit.provider_model,
        "endpoints": endpoints
        or [
            {
                "api": kit.api,
                "path": kit.path,
                "capabilities": (
                    ALL_CAPABILITIES if capabilities is None else capabilities
                ),
            }
        ],
        "limits": limits or GENEROUS,
    }
    if max_output_tokens is not None:
        fields["max_output_tokens"] = max_output_tokens
    model = await admin.registry("model.register", fields)
    await admin.registry("access.set", {"enabled": True, "groups": None})
    user = await gateway.client("alice", ["analysts"])
    return Scene(gateway, kit, provider, admin, user, model)


async def read_usage_events(
    gateway: Gateway, expected: int, timeout_s: float = 5.0
) -> list[dict[str, Any]]:
    """Return every usage event of the gateway, waiting for ``expected``.

    After the expected count arrives it listens a little longer, so a
    duplicate event would be seen rather than missed.
    """
    nc = await nats.connect(gateway.settings.nats_url)
    try:
        js = nc.jetstream()
        subjects = gateway.subjects
        subscription = await js.subscribe(
            subjects.usage_all, stream=subjects.usage_stream, ordered_consumer=True
        )
        events = [
            json.loads(data) async for data in _drain(subscription, expected, timeout_s)
        ]
        await subscription.unsubscribe()
    finally:
        await nc.close()
    return events


async def _drain(
    subscription: Any, expected: int, timeout_s: float = 5.0
) -> AsyncIterator[bytes]:
    seen = 0
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        try:
            msg = await subscription.next_msg(timeout=0.3)
        except TimeoutError:
            if seen >= expected:
                return
            continue
        seen += 1
        yield msg.data


def by_request(events: list[dict[str, Any]]) -> Counter[str]:
    """Count events per request id."""
    return Counter(event["request_id"] for event in events)


def new_request_id() -> str:
    """A fresh request id, to find a call's usage event."""
    return uuid.uuid4().hex


def event_of(events: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    """The one usage event of a request."""
    matching = [event for event in events if event["request_id"] == request_id]
    assert len(matching) == 1, f"{len(matching)} usage events for {request_id}"
    return matching[0]
