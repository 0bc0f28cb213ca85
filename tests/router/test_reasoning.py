"""Reasoning text and signatures survive the trip through the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes import anthropic
from tests.harness import Gateway
from tests.router.kits import ANTHROPIC
from tests.router.scene import ask, enroll
from tests.router.test_chat_each_api import WEATHER_TOOL


@pytest.fixture
async def claude() -> AsyncIterator[anthropic.FakeAnthropic]:
    async with anthropic.FakeAnthropic() as server:
        yield server


async def test_a_signed_thought_comes_back_and_is_accepted_on_the_next_turn(
    gateway: Gateway, claude: anthropic.FakeAnthropic
) -> None:
    """``reasoning_blocks`` sent back unchanged satisfy the provider's check."""
    scene = await enroll(gateway, ANTHROPIC, claude)
    thought = anthropic.thinking("Paris, so Celsius.", "sig-abc")
    claude.remember(thought)
    claude.queue(
        anthropic.message(
            [thought, anthropic.tool_use("toolu_1", "get_weather", {"city": "Paris"})],
            "tool_use",
        ),
        anthropic.message([anthropic.text_block("21 C and sunny.")]),
    )
    request = ask("Weather in Paris?", tools=[WEATHER_TOOL], reasoning_effort="low")

    first = await scene.chat(request)
    message = first["choices"][0]["message"]
    result = {"role": "tool", "tool_call_id": "toolu_1", "content": "21C"}
    second = await scene.chat(
        {**request, "messages": [*request["messages"], message, result]}
    )

    assert message["reasoning_content"] == "Paris, so Celsius."
    assert message["reasoning_blocks"] == [thought]
    assert first["usage"]["completion_tokens_details"]["reasoning_tokens"] > 0
    assert second["choices"][0]["message"]["content"] == "21 C and sunny."
    assert claude.requests[1].json["messages"][1]["content"][0] == thought
