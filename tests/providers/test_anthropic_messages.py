"""Golden tests of the anthropic_messages adapter against a strict fake."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.router.providers import ProviderCaller, Target
from services.router.providers.anthropic_messages import AnthropicMessages
from shared.errors import InvalidRequest, ProviderError, ProviderTimeout
from tests.fakes import anthropic as fake
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

AUTH = {"type": "api_key", "header": "x-api-key", "secret": fake.API_KEY}
USER = {"role": "user", "content": "Weather in Paris?"}
PIXEL = "data:image/png;base64,iVBORw0KGgo="


@pytest.fixture
async def server() -> AsyncIterator[fake.FakeAnthropic]:
    async with fake.FakeAnthropic() as running:
        yield running


@pytest.fixture
def adapter(caller: ProviderCaller) -> AnthropicMessages:
    return AnthropicMessages(caller)


def target(server: fake.FakeAnthropic, auth: Any = None) -> Target:
    return Target(
        "anthropic_messages", server.base_url, "/v1/messages", "claude-x", auth or AUTH
    )


def ask(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "my-claude", "messages": list(messages or [USER]), **fields}


async def test_plain_chat_translates_system_images_and_usage(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(fake.message([fake.text_block("Sunny.")], cache_read=4))
    picture = {"role": "user", "content": [
        {"type": "text", "text": "And this?"},
        {"type": "image_url", "image_url": {"url": PIXEL}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
    ]}  # fmt: skip
    request = ask(
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use Celsius."},
        USER,
        picture,
    )
    reply = valid_completion(await adapter.complete(client, target(server), request))

    sent = server.requests[0]
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.json["system"] == "Be brief.\n\nUse Celsius."
    assert sent.json["max_tokens"] == 4096
    assert sent.json["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather in Paris?"},
            {"type": "text", "text": "And this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": "iVBORw0KGgo="}},
            {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}},
        ]}
    ]  # fmt: skip
    assert reply["model"] == "my-claude"
    assert reply["choices"][0]["message"]["content"] == "Sunny."
    assert reply["usage"] == {
        "prompt_tokens": 16,
        "completion_tokens": 8,
        "total_tokens": 24,
        "completion_tokens_details": {"reasoning_tokens": 0},
        "prompt_tokens_details": {"cached_tokens": 4},
    }


async def test_tool_call_round_trip_merges_results_into_one_user_turn(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(
        fake.message(
            [
                fake.text_block("Let me check."),
                fake.tool_use("toolu_1", "get_weather", {"city": "Paris"}),
                fake.tool_use("toolu_2", "get_time", {"city": "Paris"}),
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
    assert [call["id"] for call in message["tool_calls"]] == ["toolu_1", "toolu_2"]

    results = [
        {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"},
        {"role": "tool", "tool_call_id": "toolu_2", "content": "14:00"},
    ]
    server.queue(fake.message([fake.text_block("21C at 14:00.")]))
    second = await adapter.complete(
        client, target(server), ask(USER, message, *results, tools=tools)
    )

    assert second["choices"][0]["message"]["content"] == "21C at 14:00."
    sent = server.requests[1].json
    assert sent["tools"][0] == {
        "name": "get_weather",
        "description": "Current weather of a city",
        "input_schema": WEATHER_TOOL["function"]["parameters"],
    }
    assert sent["messages"][1]["content"][1] == fake.tool_use(
        "toolu_1", "get_weather", {"city": "Paris"}
    )
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "21C"},
        {"type": "tool_result", "tool_use_id": "toolu_2", "content": "14:00"},
    ]}  # fmt: skip


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "get_time"}},
            {"type": "tool", "name": "get_time"},
        ),
    ],
)
async def test_tool_choice_forms_are_translated(
    server: fake.FakeAnthropic,
    client: httpx.AsyncClient,
    adapter: AnthropicMessages,
    choice: Any,
    sent: dict[str, Any],
) -> None:
    request = ask(tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice)
    await adapter.complete(client, target(server), request)

    assert server.requests[0].json["tool_choice"] == sent


async def test_parallel_tool_calls_false_disables_parallel_use(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    request = ask(tools=[WEATHER_TOOL], parallel_tool_calls=False)
    await adapter.complete(client, target(server), request)

    assert server.requests[0].json["tool_choice"] == {
        "type": "auto",
        "disable_parallel_tool_use": True,
    }


async def test_structured_output_is_emulated_with_a_forced_tool(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    answer = {"city": "Paris", "celsius": 21}
    server.queue(
        fake.message(
            [fake.tool_use("toolu_9", "structured_output", answer)], "tool_use"
        )
    )
    reply = valid_completion(
        await adapter.complete(
            client, target(server), ask(response_format=ANSWER_FORMAT)
        )
    )

    sent = server.requests[0].json
    assert sent["tool_choice"] == {"type": "tool", "name": "structured_output"}
    assert sent["tools"][0]["input_schema"] == ANSWER_FORMAT["json_schema"]["schema"]
    choice = reply["choices"][0]
    assert json.loads(choice["message"]["content"]) == answer
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]


async def test_reasoning_text_and_signature_round_trip_with_tool_use(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    thought = fake.thinking("Paris, so Celsius.", "sig-abc")
    server.remember(thought)
    server.queue(
        fake.message(
            [thought, fake.tool_use("toolu_1", "get_weather", {"city": "Paris"})],
            "tool_use",
        )
    )
    request = ask(tools=[WEATHER_TOOL], reasoning_effort="medium")
    first = valid_completion(await adapter.complete(client, target(server), request))
    message = first["choices"][0]["message"]
    assert message["reasoning_content"] == "Paris, so Celsius."
    assert message["reasoning_blocks"] == [thought]
    assert first["usage"]["completion_tokens_details"]["reasoning_tokens"] == 5

    result = {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"}
    follow = ask(USER, message, result, tools=[WEATHER_TOOL], reasoning_effort="medium")
    await adapter.complete(client, target(server), follow)

    sent = server.requests[1].json
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert sent["max_tokens"] == 8192 + 4096
    assert sent["messages"][1]["content"][0] == thought


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"tool_choice": "required", "tools": [WEATHER_TOOL]}, "tool_choice"),
        ({"response_format": ANSWER_FORMAT}, "response_format"),
        ({"temperature": 0.2}, "temperature"),
        ({"max_completion_tokens": 1500}, "max_completion_tokens"),
    ],
)
async def test_reasoning_conflicts_are_refused_before_any_call(
    server: fake.FakeAnthropic,
    client: httpx.AsyncClient,
    adapter: AnthropicMessages,
    fields: dict[str, Any],
    field: str,
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        await adapter.complete(
            client, target(server), ask(reasoning_effort="low", **fields)
        )

    assert raised.value.field == field
    assert server.requests == []


async def test_stream_translates_thinking_text_tools_and_usage(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    thought = fake.thinking("Let me think.", "sig-1")
    server.queue(
        fake.stream(
            [
                thought,
                fake.text_block("Checking."),
                fake.tool_use("toolu_1", "get_weather", {"city": "Paris"}),
            ],
            "tool_use",
        )
    )
    request = ask(stream=True, tools=[WEATHER_TOOL], reasoning_effort="low")
    chunks = await collect(adapter.stream(client, target(server), request))

    assert server.requests[0].json["stream"] is True
    assert streamed_text(chunks, "reasoning_content") == "Let me think."
    assert streamed_text(chunks) == "Checking."
    assert streamed_tool_calls(chunks) == [
        {"id": "toolu_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]
    blocks = [b for c in chunks for ch in c["choices"]
              for b in ch["delta"].get("reasoning_blocks") or []]  # fmt: skip
    assert blocks == [thought]
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["prompt_tokens"] == 12
    assert chunks[-1]["usage"]["completion_tokens"] == 8


async def test_stream_without_usage_ends_without_usage_chunk(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(fake.stream([fake.text_block("Hi there")], with_usage=False))
    chunks = await collect(adapter.stream(client, target(server), ask(stream=True)))

    assert streamed_text(chunks) == "Hi there"
    assert all("usage" not in chunk for chunk in chunks)


async def test_stream_error_event_becomes_provider_error(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(fake.stream([fake.text_block("Hi")], error_type="overloaded_error"))
    with pytest.raises(ProviderError) as raised:
        await collect(adapter.stream(client, target(server), ask(stream=True)))

    assert raised.value.provider_status == 529


async def test_client_leaving_a_stream_closes_the_provider_connection(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(fake.stream([fake.text_block("x" * 40)] * 20, delay_s=0.02))
    stream = adapter.stream(client, target(server), ask(stream=True))
    async with closing(stream) as chunks:
        async for chunk in chunks:
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                break

    await server.wait_disconnect()


async def test_429_is_retried_after_retry_after(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(fake.error(429, "Number of requests exceeded", **{"retry-after": "1"}))
    started = time.monotonic()
    reply = await adapter.complete(client, target(server), ask())

    assert time.monotonic() - started >= 1.0
    assert valid_completion(reply)["choices"][0]["message"]["content"]


async def test_429_beyond_the_budget_gives_up(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(fake.error(429, "Slow down", **{"retry-after": "60"}))
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server), ask())

    assert (raised.value.provider_status, len(server.requests)) == (429, 1)


async def test_500_is_reported_with_the_provider_message(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(*[fake.error(500, "Internal server error")] * 3)
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server), ask())

    assert raised.value.message == "provider answered 500: Internal server error"


async def test_a_hanging_provider_times_out(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    server.queue(Reply.hanging())
    with pytest.raises(ProviderTimeout):
        await adapter.complete(client, target(server), ask())


async def test_wrong_key_is_reported_without_echoing_it(
    server: fake.FakeAnthropic, client: httpx.AsyncClient, adapter: AnthropicMessages
) -> None:
    wrong = {"type": "api_key", "header": "x-api-key", "secret": "sk-ant-leak"}
    with pytest.raises(ProviderError) as raised:
        await adapter.complete(client, target(server, wrong), ask())

    assert raised.value.provider_status == 401
    assert "sk-ant-leak" not in str(raised.value.to_body())
