"""Golden tests of the openai_chat and azure_openai_chat adapters."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.router.providers import ProviderCaller, Target
from services.router.providers.openai_chat import AzureOpenAIChat, OpenAIChat
from shared.errors import ProviderError, ProviderTimeout
from tests.fakes import openai as fake
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
from .openai_apis import AZURE, OPENAI, USER, Api

# Reasoning needs a newer api-version than the adapter's default.
AZURE_REASONING = AZURE.at_version("2024-12-01-preview")
# The last GA api-version before structured outputs.
AZURE_BEFORE_SCHEMAS = AZURE.at_version("2024-06-01")
both_apis = pytest.mark.parametrize("api", [OPENAI, AZURE], ids=lambda api: api.name)


@pytest.fixture
def api() -> Api:
    """Test openai_chat unless a test is parametrised over more apis."""
    return OPENAI


@pytest.fixture
async def server(api: Api) -> AsyncIterator[fake.FakeOpenAI]:
    async with fake.FakeOpenAI(azure=api.azure) as running:
        yield running


def target(server: fake.FakeOpenAI, **auth: Any) -> Target:
    return OPENAI.target(server, **auth)


def ask(*messages: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {"model": "my-gpt", "messages": list(messages or [USER]), **fields}


async def test_plain_chat_answers_under_the_client_model_name(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    reply = await OpenAIChat(caller).complete(client, target(server), ask())

    assert valid_completion(reply)["model"] == "my-gpt"
    assert reply["choices"][0]["message"]["content"] == fake.FIXED_TEXT
    assert reply["usage"]["total_tokens"] == 20
    assert server.requests[0].json["model"] == "gpt-4o"
    assert "stream_options" not in server.requests[0].json


async def test_tool_call_round_trip_sends_results_back(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    adapter = OpenAIChat(caller)
    server.queue(fake.tool_calls(("call_1", "get_weather", {"city": "Paris"})))
    first = await adapter.complete(client, target(server), ask(tools=[WEATHER_TOOL]))
    message = valid_completion(first)["choices"][0]["message"]
    assert first["choices"][0]["finish_reason"] == "tool_calls"

    result = {"role": "tool", "tool_call_id": "call_1", "content": '{"celsius": 21}'}
    server.queue(fake.text("21 degrees in Paris."))
    second = await adapter.complete(
        client, target(server), ask(USER, message, result, tools=[WEATHER_TOOL])
    )

    assert second["choices"][0]["message"]["content"] == "21 degrees in Paris."
    assert server.requests[1].json["messages"][2] == result


@both_apis
async def test_parallel_tool_calls_come_back_together(
    api: Api,
    server: fake.FakeOpenAI,
    client: httpx.AsyncClient,
    caller: ProviderCaller,
) -> None:
    server.queue(
        fake.tool_calls(
            ("call_1", "get_weather", {"city": "Paris"}),
            ("call_2", "get_time", {"city": "Paris"}),
        )
    )
    request = ask(tools=[WEATHER_TOOL, TIME_TOOL])
    reply = await api.adapter(caller).complete(client, api.target(server), request)

    calls = valid_completion(reply)["choices"][0]["message"]["tool_calls"]
    assert [call["function"]["name"] for call in calls] == ["get_weather", "get_time"]
    assert reply["model"] == "my-gpt"
    assert api.sent(server) == api.body(tools=[WEATHER_TOOL, TIME_TOOL])


@both_apis
@pytest.mark.parametrize(
    "choice", ["required", {"type": "function", "function": {"name": "get_time"}}]
)
async def test_forced_tool_choice_reaches_the_provider_unchanged(
    api: Api,
    server: fake.FakeOpenAI,
    client: httpx.AsyncClient,
    caller: ProviderCaller,
    choice: Any,
) -> None:
    server.queue(fake.tool_calls(("call_1", "get_time", {"city": "Paris"})))
    request = ask(tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice)
    reply = await api.adapter(caller).complete(client, api.target(server), request)

    call = valid_completion(reply)["choices"][0]["message"]["tool_calls"][0]
    assert call["function"] == {"name": "get_time", "arguments": '{"city": "Paris"}'}
    assert api.sent(server) == api.body(
        tools=[WEATHER_TOOL, TIME_TOOL], tool_choice=choice
    )


@both_apis
async def test_structured_output_passes_the_schema(
    api: Api,
    server: fake.FakeOpenAI,
    client: httpx.AsyncClient,
    caller: ProviderCaller,
) -> None:
    server.queue(fake.text('{"city": "Paris", "celsius": 21}'))
    reply = await api.adapter(caller).complete(
        client, api.target(server), ask(response_format=ANSWER_FORMAT)
    )

    content = valid_completion(reply)["choices"][0]["message"]["content"]
    assert json.loads(content) == {"city": "Paris", "celsius": 21}
    assert api.sent(server) == api.body(response_format=ANSWER_FORMAT)


@pytest.mark.parametrize("api", [OPENAI, AZURE_REASONING], ids=lambda api: api.name)
async def test_reasoning_text_is_returned_and_not_resent(
    api: Api,
    server: fake.FakeOpenAI,
    client: httpx.AsyncClient,
    caller: ProviderCaller,
) -> None:
    adapter = api.adapter(caller)
    thought = {"role": "assistant", "content": "Sunny.", "reasoning_content": "Hmm."}
    server.queue(fake.completion(thought, reasoning=5))
    first = await adapter.complete(
        client, api.target(server), ask(reasoning_effort="high")
    )
    message = valid_completion(first)["choices"][0]["message"]
    assert message["reasoning_content"] == "Hmm."
    assert first["usage"]["completion_tokens_details"]["reasoning_tokens"] == 5

    follow_up = {"role": "user", "content": "And tomorrow?"}
    await adapter.complete(client, api.target(server), ask(USER, message, follow_up))

    assert api.sent(server, 0) == api.body(reasoning_effort="high")
    assert api.sent(server, 1) == api.body(
        USER, {"role": "assistant", "content": "Sunny."}, follow_up
    )


@pytest.mark.parametrize(
    ("api", "feature"),
    [
        (AZURE, ({"reasoning_effort": "high"}, "'reasoning_effort'")),
        (AZURE_BEFORE_SCHEMAS, ({"response_format": ANSWER_FORMAT}, "'json_schema'")),
    ],
    ids=["reasoning_effort", "json_schema"],
)
async def test_azure_rejects_a_feature_newer_than_the_api_version(
    api: Api,
    server: fake.FakeOpenAI,
    client: httpx.AsyncClient,
    caller: ProviderCaller,
    feature: tuple[dict[str, Any], str],
) -> None:
    """An api-version older than the feature fails at once, naming the feature."""
    fields, named = feature
    with pytest.raises(ProviderError) as raised:
        await api.adapter(caller).complete(client, api.target(server), ask(**fields))

    assert raised.value.provider_status == 400
    assert named in raised.value.message
    assert api.sent(server) == api.body(**fields)
    assert len(server.requests) == 1


async def test_stream_always_asks_for_usage_and_ends_with_it(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    chunks = await collect(
        OpenAIChat(caller).stream(client, target(server), ask(stream=True))
    )

    assert server.requests[0].json["stream_options"] == {"include_usage": True}
    assert streamed_text(chunks) == "Hello from the fake provider."
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == 12
    assert {chunk["model"] for chunk in chunks} == {"my-gpt"}


async def test_stream_without_provider_usage_ends_without_usage_chunk(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    server.queue(fake.text_stream(["a", "b"], with_usage=False))
    chunks = await collect(
        OpenAIChat(caller).stream(client, target(server), ask(stream=True))
    )

    assert streamed_text(chunks) == "ab"
    assert all("usage" not in chunk for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_streamed_tool_call_arguments_arrive_as_deltas(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    start = {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "get_weather", "arguments": ""}}  # fmt: skip
    more = {"index": 0, "function": {"arguments": '{"city": "Paris"}'}}
    server.queue(
        fake.stream(
            [
                fake.chunk({"role": "assistant", "tool_calls": [start]}),
                fake.chunk({"tool_calls": [more]}),
                fake.chunk({}, "tool_calls"),
                fake.usage_chunk(),
            ]
        )
    )
    chunks = await collect(
        OpenAIChat(caller).stream(
            client, target(server), ask(stream=True, tools=[WEATHER_TOOL])
        )
    )

    assert streamed_tool_calls(chunks) == [
        {"id": "call_1", "name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]


async def test_client_leaving_a_stream_closes_the_provider_connection(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    server.queue(fake.text_stream(["x"] * 50, delay_s=0.02))
    stream = OpenAIChat(caller).stream(client, target(server), ask(stream=True))
    async with closing(stream) as chunks:
        async for chunk in chunks:
            if chunk["choices"][0]["delta"].get("content"):
                break

    await server.wait_disconnect()
    assert server.disconnects == 1


async def test_429_is_retried_after_retry_after(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    server.queue(fake.error(429, "Rate limit reached", **{"retry-after": "1"}))
    started = time.monotonic()
    reply = await OpenAIChat(caller).complete(client, target(server), ask())

    assert time.monotonic() - started >= 1.0
    assert valid_completion(reply)["choices"][0]["message"]["content"]
    assert len(server.requests) == 2


async def test_429_beyond_the_retry_budget_gives_up_at_once(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    server.queue(fake.error(429, "Rate limit reached", **{"retry-after": "30"}))
    with pytest.raises(ProviderError) as raised:
        await OpenAIChat(caller).complete(client, target(server), ask())

    assert raised.value.provider_status == 429
    assert raised.value.retry_after_s == 30
    assert len(server.requests) == 1


async def test_500_is_retried_then_reported(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    server.queue(*[fake.error(500, "The server had an error")] * 3)
    with pytest.raises(ProviderError) as raised:
        await OpenAIChat(caller).complete(client, target(server), ask())

    assert raised.value.to_body()["error"] == {
        "code": "provider_error",
        "message": "provider answered 500: The server had an error",
        "provider_status": 500,
    }
    assert len(server.requests) == 3


async def test_a_hanging_provider_times_out(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    server.queue(Reply.hanging())
    with pytest.raises(ProviderTimeout):
        await OpenAIChat(caller).complete(client, target(server), ask())
    await server.wait_disconnect()


async def test_provider_error_never_echoes_the_api_key(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    wrong = {"type": "bearer", "secret": "sk-wrong-secret"}
    with pytest.raises(ProviderError) as raised:
        await OpenAIChat(caller).complete(client, target(server, **wrong), ask())

    assert raised.value.provider_status == 401
    assert "sk-wrong-secret" not in str(raised.value.to_body())
    assert "[redacted]" in raised.value.message


async def test_bad_request_reports_the_provider_message(
    server: fake.FakeOpenAI, client: httpx.AsyncClient, caller: ProviderCaller
) -> None:
    bad = ask({"role": "wizard", "content": "hi"})
    with pytest.raises(ProviderError) as raised:
        await OpenAIChat(caller).complete(client, target(server), bad)

    assert raised.value.provider_status == 400
    assert "wizard" in raised.value.message


@pytest.mark.parametrize("api", [AZURE], ids=lambda api: api.name)
async def test_azure_uses_the_deployment_path_version_and_key_header(
    api: Api,
    server: fake.FakeOpenAI,
    client: httpx.AsyncClient,
    caller: ProviderCaller,
) -> None:
    reply = await AzureOpenAIChat(caller).complete(client, api.target(server), ask())
    chunks = await collect(
        AzureOpenAIChat(caller).stream(client, api.target(server), ask(stream=True))
    )

    assert valid_completion(reply)["model"] == "my-gpt"
    assert api.sent(server) == api.body()
    assert chunks[-1]["usage"]["completion_tokens"] == 8
