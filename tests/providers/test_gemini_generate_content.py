"""Golden tests of the gemini_generate_content adapter against a strict fake."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.router.providers import ProviderCaller, Target
from services.router.providers.gemini_generate_content import GeminiGenerateContent
from shared.errors import InvalidRequest, ProviderError, ProviderTimeout
from tests.fakes import gemini as fake
from tests.fakes.server import Reply

from .conftest import (
    ANSWER_FORMAT,
    TIME_TOOL,
    WEATHER_TOOL,
    closing,
    collect,
    streamed_text,
    streamed_tool_calls,
    valid_completion,
)

AUTH = {"type": "api_key", "header": "x-goog-api-key", "secret": fake.API_KEY}
USER = {"role": "user", "content": "Weather in Paris?"}
PIXEL = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
async def server() -> AsyncIterator[fake.FakeGemini]:
    async with fake.FakeGemini() as running:
        yield running


@pytest.fixture
def adapter(caller: ProviderCaller) -> GeminiGenerateContent:
    return GeminiGenerateContent(caller)


def target(server: fake.FakeGemini, auth: Any = None) -> Target:
    return Target(
        "gemini_generate_content",
        server.base_url,
        "/v1beta/models/{model}:generateContent",
        "gemini-2.5-flash",
        auth or AUTH,
    )


def ask(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "my-gemini", "messages": list(messages or [USER]), **fields}


async def test_plain_chat_translates_system_images_and_usage(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    picture = {"role": "user", "content": [
        {"type": "text", "text": "And this?"},
        {"type": "image_url", "image_url": {"url": PIXEL}},
    ]}  # fmt: skip
    request = ask(
        {"role": "system", "content": "Be brief."}, picture, max_completion_tokens=99
    )
    reply = valid_completion(await adapter.complete(client, target(server), request))

    sent = server.requests[0]
    assert sent.path == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent.json == {
        "contents": [{"role": "user", "parts": [
            {"text": "And this?"},
            {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
        ]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"maxOutputTokens": 99},
    }  # fmt: skip
    assert reply["choices"][0]["message"]["content"] == fake.FIXED_TEXT
    assert reply["usage"] == {
        "prompt_tokens": 12,
        "completion_tokens": 11,
        "total_tokens": 23,
        "completion_tokens_details": {"reasoning_tokens": 3},
        "prompt_tokens_details": {"cached_tokens": 2},
    }


async def test_tool_round_trip_maps_results_back_by_synthesized_id(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(
        fake.reply(
            [
                fake.call("get_weather", {"city": "Paris"}),
                fake.call("get_time", {"city": "Paris"}),
            ]
        )
    )
    tools = [WEATHER_TOOL, TIME_TOOL]
    first = valid_completion(
        await adapter.complete(client, target(server), ask(tools=tools))
    )
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    ids = [call["id"] for call in message["tool_calls"]]
    assert len(set(ids)) == 2

    results = [
        {"role": "tool", "tool_call_id": ids[1], "content": '{"time": "14:00"}'},
        {"role": "tool", "tool_call_id": ids[0], "content": "21C"},
    ]
    await adapter.complete(
        client, target(server), ask(USER, message, *results, tools=tools)
    )

    sent = server.requests[1].json
    assert sent["tools"][0]["functionDeclarations"][0] == {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parametersJsonSchema": WEATHER_TOOL["function"]["parameters"],
    }
    assert sent["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "get_time", "response": {"time": "14:00"}}},
        {"functionResponse": {"name": "get_weather", "response": {"result": "21C"}}},
    ]}  # fmt: skip


async def test_unknown_tool_call_id_is_refused(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    orphan = {"role": "tool", "tool_call_id": "call_nope", "content": "21C"}
    with pytest.raises(InvalidRequest) as raised:
        await adapter.complete(client, target(server), ask(USER, orphan))

    assert raised.value.field == "messages[1].tool_call_id"


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("required", {"mode": "ANY"}),
        ("none", {"mode": "NONE"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
        ),
    ],
)
async def test_tool_choice_forms_are_translated(
    server: fake.FakeGemini,
    client: httpx.AsyncClient,
    adapter: GeminiGenerateContent,
    choice: Any,
    sent: dict[str, Any],
) -> None:
    request = ask(tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice)
    await adapter.complete(client, target(server), request)

    assert server.requests[0].json["toolConfig"] == {"functionCallingConfig": sent}


async def test_structured_output_is_native(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(fake.reply([{"text": '{"city": "Paris", "celsius": 21}'}]))
    reply = valid_completion(
        await adapter.complete(
            client, target(server), ask(response_format=ANSWER_FORMAT)
        )
    )

    assert server.requests[0].json["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseJsonSchema": ANSWER_FORMAT["json_schema"]["schema"],
    }
    assert json.loads(reply["choices"][0]["message"]["content"])["celsius"] == 21


async def test_thoughts_and_signatures_round_trip(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    signed_call = fake.call("get_weather", {"city": "Paris"}, signature="c2lnLWc=")
    server.remember(signed_call)
    server.queue(fake.reply([fake.thought("Paris: Celsius."), signed_call]))
    request = ask(tools=[WEATHER_TOOL], reasoning_effort="high")
    first = valid_completion(await adapter.complete(client, target(server), request))
    message = first["choices"][0]["message"]
    assert message["reasoning_content"] == "Paris: Celsius."
    call_id = message["tool_calls"][0]["id"]
    assert message["reasoning_blocks"] == [
        {"type": "thought_signature", "signature": "c2lnLWc=", "tool_call_id": call_id}
    ]

    result = {"role": "tool", "tool_call_id": call_id, "content": "21C"}
    await adapter.complete(
        client, target(server), ask(USER, message, result, tools=[WEATHER_TOOL])
    )

    assert server.requests[0].json["generationConfig"]["thinkingConfig"] == {
        "thinkingBudget": 24576,
        "includeThoughts": True,
    }
    assert server.requests[1].json["contents"][1]["parts"] == [signed_call]


async def test_stream_with_thoughts_tools_and_usage(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(
        fake.stream(
            [fake.thought("Hmm."), {"text": "Checking."},
             fake.call("get_weather", {"city": "Paris"}, signature="c2ln")]
        )
    )  # fmt: skip
    request = ask(stream=True, tools=[WEATHER_TOOL], reasoning_effort="low")
    chunks = await collect(adapter.stream(client, target(server), request))

    assert server.requests[0].query == {"alt": "sse"}
    assert streamed_text(chunks, "reasoning_content") == "Hmm."
    assert streamed_text(chunks) == "Checking."
    [call] = streamed_tool_calls(chunks)
    assert (call["name"], json.loads(call["arguments"])) == (
        "get_weather",
        {"city": "Paris"},
    )
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens_details"]["reasoning_tokens"] == 3


async def test_stream_without_usage_metadata_ends_without_usage(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(fake.stream([{"text": "Hi "}, {"text": "there"}], with_usage=False))
    chunks = await collect(adapter.stream(client, target(server), ask(stream=True)))

    assert streamed_text(chunks) == "Hi there"
    assert all("usage" not in chunk for chunk in chunks)


async def test_client_leaving_a_stream_closes_the_provider_connection(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(fake.stream([{"text": "x" * 30}] * 30, delay_s=0.02))
    stream = adapter.stream(client, target(server), ask(stream=True))
    async with closing(stream) as chunks:
        async for chunk in chunks:
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                break

    await server.wait_disconnect()


async def test_429_is_retried_after_retry_after(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(fake.error(429, "Resource has been exhausted", **{"retry-after": "1"}))
    started = time.monotonic()
    valid_completion(await adapter.complete(client, target(server), ask()))

    assert time.monotonic() - started >= 1.0


async def test_429_beyond_the_budget_gives_up(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(
        fake.error(429, "Resource has been exhausted", **{"retry-after": "45"})
    )
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server), ask())

    assert raised.value.provider_status == 429


async def test_500_is_retried_then_reported(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(*[fake.error(500, "An internal error has occurred.")] * 3)
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server), ask())

    assert (
        raised.value.message == "provider answered 500: An internal error has occurred."
    )


async def test_a_hanging_provider_times_out(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    server.queue(Reply.hanging())
    with pytest.raises(ProviderTimeout):
        await adapter.complete(client, target(server), ask())


async def test_service_account_sources_are_refused_clearly(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    vertex = {"type": "google_service_account", "secret": "{}"}
    with pytest.raises(InvalidRequest) as raised:
        await adapter.complete(client, target(server, vertex), ask())

    assert raised.value.field == "auth.type"
    assert server.requests == []


async def test_wrong_key_is_reported_without_echoing_it(
    server: fake.FakeGemini, client: httpx.AsyncClient, adapter: GeminiGenerateContent
) -> None:
    wrong = {"type": "api_key", "header": "x-goog-api-key", "secret": "AIza-leaky"}
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server, wrong), ask())

    assert raised.value.provider_status == 400
    assert "AIza-leaky" not in str(raised.value.to_body())
