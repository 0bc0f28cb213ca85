"""Golden tests of the bedrock_converse adapter against a strict, signing fake."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.router.providers import ProviderCaller, Target
from services.router.providers.bedrock_converse import BedrockConverse
from shared.errors import InvalidRequest, ProviderError, ProviderTimeout
from tests.fakes import bedrock as fake
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

USER = {"role": "user", "content": "Weather in Paris?"}
MODEL = "anthropic.claude-3-7-sonnet-20250219-v1:0"


@pytest.fixture
async def server() -> AsyncIterator[fake.FakeBedrock]:
    async with fake.FakeBedrock() as running:
        yield running


@pytest.fixture
def adapter(caller: ProviderCaller) -> BedrockConverse:
    return BedrockConverse(caller)


def target(server: fake.FakeBedrock, auth: Any = None) -> Target:
    return Target(
        "bedrock_converse",
        server.base_url,
        "/model/{model}/converse",
        MODEL,
        auth or fake.AUTH,
    )


def ask(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "my-bedrock", "messages": list(messages or [USER]), **fields}


async def test_plain_chat_is_signed_and_translated(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(fake.reply([{"text": "Sunny."}], cache_read=3))
    request = ask({"role": "system", "content": "Be brief."}, USER, temperature=0.3)
    reply = valid_completion(await adapter.complete(client, target(server), request))

    sent = server.requests[0]
    assert sent.path == "/model/anthropic.claude-3-7-sonnet-20250219-v1%3A0/converse"
    assert sent.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
    assert sent.json == {
        "messages": [{"role": "user", "content": [{"text": "Weather in Paris?"}]}],
        "inferenceConfig": {"maxTokens": 4096, "temperature": 0.3},
        "system": [{"text": "Be brief."}],
    }
    assert reply["choices"][0]["message"]["content"] == "Sunny."
    assert reply["usage"]["prompt_tokens"] == 15
    assert reply["usage"]["prompt_tokens_details"]["cached_tokens"] == 3


async def test_a_wrong_secret_fails_the_signature_check_without_leaking_it(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    wrong = {**fake.AUTH, "secret": "not-the-secret-key-material"}
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server, wrong), ask())

    assert raised.value.provider_status == 403
    assert "not-the-secret" not in str(raised.value.to_body())


async def test_tool_call_round_trip_with_parallel_calls(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(
        fake.reply(
            [
                fake.tool_use("tu_1", "get_weather", {"city": "Paris"}),
                fake.tool_use("tu_2", "get_time", {"city": "Paris"}),
            ],
            "tool_use",
        )
    )
    tools = [WEATHER_TOOL, TIME_TOOL]
    first = valid_completion(
        await adapter.complete(client, target(server), ask(tools=tools))
    )
    message = first["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"
    assert len(message["tool_calls"]) == 2

    results = [
        {"role": "tool", "tool_call_id": "tu_1", "content": "21C"},
        {"role": "tool", "tool_call_id": "tu_2", "content": "14:00"},
    ]
    await adapter.complete(
        client, target(server), ask(USER, message, *results, tools=tools)
    )

    sent = server.requests[1].json
    assert sent["toolConfig"]["tools"][0] == {
        "toolSpec": {
            "name": "get_weather",
            "inputSchema": {"json": WEATHER_TOOL["function"]["parameters"]},
            "description": "Current weather of a city",
        }
    }
    assert sent["messages"][2]["content"] == [
        {"toolResult": {"toolUseId": "tu_1", "content": [{"text": "21C"}]}},
        {"toolResult": {"toolUseId": "tu_2", "content": [{"text": "14:00"}]}},
    ]


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("required", {"any": {}}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"tool": {"name": "get_time"}},
        ),
    ],
)
async def test_forced_tool_choice_is_translated(
    server: fake.FakeBedrock,
    client: httpx.AsyncClient,
    adapter: BedrockConverse,
    choice: Any,
    sent: dict[str, Any],
) -> None:
    request = ask(tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice)
    await adapter.complete(client, target(server), request)

    assert server.requests[0].json["toolConfig"]["toolChoice"] == sent


async def test_tool_choice_none_after_tool_use_is_refused(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    call = {"id": "tu_1", "type": "function",
            "function": {"name": "get_weather", "arguments": "{}"}}  # fmt: skip
    history: list[dict[str, Any]] = [
        USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "tu_1", "content": "21C"},
    ]
    with pytest.raises(InvalidRequest) as raised:
        await adapter.complete(
            client,
            target(server),
            ask(*history, tools=[WEATHER_TOOL], tool_choice="none"),
        )

    assert raised.value.field == "tool_choice"


async def test_structured_output_is_emulated_with_a_forced_tool(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    answer = {"city": "Paris", "celsius": 21}
    server.queue(
        fake.reply([fake.tool_use("tu_9", "structured_output", answer)], "tool_use")
    )
    reply = valid_completion(
        await adapter.complete(
            client, target(server), ask(response_format=ANSWER_FORMAT)
        )
    )

    assert server.requests[0].json["toolConfig"]["toolChoice"] == {
        "tool": {"name": "structured_output"}
    }
    assert json.loads(reply["choices"][0]["message"]["content"]) == answer
    assert reply["choices"][0]["finish_reason"] == "stop"


async def test_reasoning_and_signature_round_trip(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    thought = fake.reasoning("Paris means Celsius.", "sig-b1")
    server.remember(thought)
    server.queue(
        fake.reply(
            [thought, fake.tool_use("tu_1", "get_weather", {"city": "Paris"})],
            "tool_use",
        )
    )
    request = ask(tools=[WEATHER_TOOL], reasoning_effort="low")
    first = valid_completion(await adapter.complete(client, target(server), request))
    message = first["choices"][0]["message"]
    assert message["reasoning_content"] == "Paris means Celsius."

    result = {"role": "tool", "tool_call_id": "tu_1", "content": "21C"}
    follow = ask(USER, message, result, tools=[WEATHER_TOOL], reasoning_effort="low")
    await adapter.complete(client, target(server), follow)

    sent = server.requests[1].json
    assert sent["additionalModelRequestFields"] == {
        "thinking": {"type": "enabled", "budget_tokens": 2048}
    }
    assert sent["messages"][1]["content"][0] == thought


async def test_event_stream_with_reasoning_tools_and_usage(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    thought = fake.reasoning("Hmm.", "sig-s1")
    server.queue(
        fake.stream(
            [
                thought,
                {"text": "Checking."},
                fake.tool_use("tu_1", "get_weather", {"city": "Paris"}),
            ],
            "tool_use",
        )
    )
    request = ask(stream=True, tools=[WEATHER_TOOL], reasoning_effort="low")
    chunks = await collect(adapter.stream(client, target(server), request))

    assert server.requests[0].path.endswith("/converse-stream")
    assert streamed_text(chunks, "reasoning_content") == "Hmm."
    assert streamed_text(chunks) == "Checking."
    assert streamed_tool_calls(chunks) == [
        {"id": "tu_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]
    blocks = [b for c in chunks for ch in c["choices"]
              for b in ch["delta"].get("reasoning_blocks") or []]  # fmt: skip
    assert blocks == [{"type": "thinking", "thinking": "Hmm.", "signature": "sig-s1"}]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["total_tokens"] == 20


async def test_stream_without_metadata_ends_without_usage(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(fake.stream([{"text": "Hi there"}], with_usage=False))
    chunks = await collect(adapter.stream(client, target(server), ask(stream=True)))

    assert streamed_text(chunks) == "Hi there"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in chunk for chunk in chunks)


async def test_stream_exception_becomes_provider_error(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(fake.stream([{"text": "Hi there"}], exception="throttlingException"))
    with pytest.raises(ProviderError) as raised:
        await collect(adapter.stream(client, target(server), ask(stream=True)))

    assert raised.value.provider_status == 429


async def test_client_leaving_a_stream_closes_the_provider_connection(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(fake.stream([{"text": "x" * 30}] * 20, delay_s=0.02))
    stream = adapter.stream(client, target(server), ask(stream=True))
    async with closing(stream) as chunks:
        async for chunk in chunks:
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                break

    await server.wait_disconnect()


async def test_throttling_is_retried_after_retry_after(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(
        fake.error(
            429, "ThrottlingException", "Too many requests", **{"retry-after": "1"}
        )
    )
    started = time.monotonic()
    valid_completion(await adapter.complete(client, target(server), ask()))

    assert time.monotonic() - started >= 1.0
    assert len(server.requests) == 2


async def test_throttling_beyond_the_budget_gives_up(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(
        fake.error(
            429, "ThrottlingException", "Too many requests", **{"retry-after": "99"}
        )
    )
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server), ask())

    assert raised.value.provider_status == 429


async def test_500_is_retried_then_reported(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(*[fake.error(500, "InternalServerException", "Internal error")] * 3)
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server), ask())

    assert raised.value.message == "provider answered 500: Internal error"
    assert len(server.requests) == 3


async def test_a_hanging_provider_times_out(
    server: fake.FakeBedrock, client: httpx.AsyncClient, adapter: BedrockConverse
) -> None:
    server.queue(Reply.hanging())
    with pytest.raises(ProviderTimeout):
        await adapter.complete(client, target(server), ask())
