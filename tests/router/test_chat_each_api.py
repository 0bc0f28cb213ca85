"""Plain chat and a tool-call round trip through NATS, for every endpoint api."""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.server import FakeServer
from tests.harness import Gateway
from tests.router.kits import Kit
from tests.router.scene import MODEL, ask, enroll, event_of, new_request_id

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


async def test_a_plain_chat_answers_under_the_registered_name(
    gateway: Gateway, kit: Kit, provider: FakeServer
) -> None:
    """The reply is an OpenAI completion named after the registered model."""
    scene = await enroll(gateway, kit, provider)
    provider.queue(kit.text("Hello, Alice."))
    request_id = new_request_id()

    reply = await scene.chat(ask(), request_id=request_id)

    assert reply["model"] == MODEL
    assert reply["choices"][0]["message"]["content"] == "Hello, Alice."
    assert reply["choices"][0]["finish_reason"] == "stop"
    event = event_of(await scene.usage_events(1), request_id)
    usage = reply["usage"]
    assert event | {"latency_ms": 0, "time": ""} == {
        "request_id": request_id,
        "time": "",
        "model": MODEL,
        "provider": kit.provider,
        "project": "proj-a",
        "user": "alice",
        "application": "workshop",
        "status": "ok",
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "reasoning_tokens": usage["completion_tokens_details"]["reasoning_tokens"],
        "cached_tokens": usage["prompt_tokens_details"]["cached_tokens"],
        "latency_ms": 0,
        "stream": False,
        "usage_source": "provider",
    }


async def test_a_tool_call_round_trip_reaches_the_provider_and_back(
    gateway: Gateway, kit: Kit, provider: FakeServer
) -> None:
    """The model asks for a tool; its result goes back; the model answers."""
    scene = await enroll(gateway, kit, provider)
    provider.queue(kit.tool_call("call_w1", "get_weather", {"city": "Paris"}))
    question = [{"role": "user", "content": "Weather in Paris?"}]

    first = await scene.chat(
        {"model": MODEL, "messages": question, "tools": [WEATHER_TOOL]}
    )

    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    [call] = message["tool_calls"]
    assert call["function"]["name"] == "get_weather"
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris"}

    provider.queue(kit.text("It is sunny in Paris."))
    result = {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21 C"}
    second = await scene.chat(
        {
            "model": MODEL,
            "messages": [*question, message, result],
            "tools": [WEATHER_TOOL],
        }
    )

    assert second["choices"][0]["message"]["content"] == "It is sunny in Paris."
    assert b"sunny, 21 C" in provider.requests[-1].body
